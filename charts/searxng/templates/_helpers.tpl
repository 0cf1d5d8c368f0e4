{{- define "searxng.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "searxng" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-searxng" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "searxng.valkeyName" -}}
{{- printf "%s-valkey" (include "searxng.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "searxng.selectorLabels" -}}
app.kubernetes.io/name: searxng
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: search
{{- end }}

{{- define "searxng.valkeySelectorLabels" -}}
app.kubernetes.io/name: valkey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cache
{{- end }}

{{- define "searxng.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: jan-server
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "searxng.labels" -}}
{{ include "searxng.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
{{ include "searxng.commonLabels" . }}
{{- end }}

{{- define "searxng.valkeyLabels" -}}
{{ include "searxng.valkeySelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.valkey.image.tag | quote }}
{{ include "searxng.commonLabels" . }}
{{- end }}

{{- define "searxng.imageRef" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end }}

{{- define "searxng.baseUrl" -}}
{{- printf "http://%s.%s.svc:8080/" (include "searxng.fullname" .) .Release.Namespace -}}
{{- end }}

{{/*
settings.yml. Secrets are not in it: SearXNG reads SEARXNG_SECRET over server.secret_key and
SEARXNG_VALKEY_URL (the URL below plus the password) over valkey.url, both set from the Secret.
*/}}
{{- define "searxng.settings" -}}
{{- $generated := dict
  "use_default_settings" true
  "general" (dict "instance_name" .Values.instanceName "debug" false)
  "server" (dict "base_url" (include "searxng.baseUrl" .) "limiter" true "public_instance" false "image_proxy" false)
  "search" (dict "formats" (list "html" "json") "safe_search" 1)
  "valkey" (dict "url" (printf "valkey://%s:6379/0" (include "searxng.valkeyName" .)))
-}}
{{- $settings := mergeOverwrite $generated (deepCopy .Values.settings) -}}
{{- if not (has "json" $settings.search.formats) -}}
{{- fail "searxng: settings.search.formats must include json (mcp-tools asks for format=json)" -}}
{{- end -}}
{{- if not $settings.server.limiter -}}
{{- fail "searxng: settings.server.limiter must stay on" -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end }}

{{- define "searxng.limiter" -}}
# Bot detection and rate limiting (server.limiter), backed by Valkey.
[botdetection]
ipv4_prefix = 32
ipv6_prefix = 48
trusted_proxies = {{ toJson .Values.limiter.trustedProxies }}

[botdetection.ip_limit]
filter_link_local = false
link_token = false

[botdetection.ip_lists]
block_ip = []
pass_ip = {{ toJson .Values.limiter.passIp }}
pass_searxng_org = false
{{- end }}

{{- define "searxng.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "searxng.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
