{{/*
The four apps: their ports and whether they own a database schema. Mirrors apps/gateway/routes.py
(APPS); a test checks the two agree.
*/}}
{{- define "jan-app.catalog" -}}
llm-api: {port: 8080, schema: true}
response-api: {port: 8082, schema: true}
media-api: {port: 8285, schema: true}
mcp-tools: {port: 8091, schema: true}
{{- end }}

{{- define "jan-app.spec" -}}
{{- $catalog := include "jan-app.catalog" . | fromYaml -}}
{{- toYaml (get $catalog .Values.app) -}}
{{- end }}

{{- define "jan-app.port" -}}
{{- $spec := include "jan-app.spec" . | fromYaml -}}
{{- .Values.port | default $spec.port -}}
{{- end }}

{{- define "jan-app.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Values.app .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Values.app | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "jan-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "jan-app.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end }}

{{- define "jan-app.baseSelector" -}}
app.kubernetes.io/name: {{ .Values.app }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jan-app.selectorLabels" -}}
{{ include "jan-app.baseSelector" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "jan-app.migrationSelectorLabels" -}}
{{ include "jan-app.baseSelector" . }}
app.kubernetes.io/component: migration
{{- end }}

{{- define "jan-app.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/part-of: jan-server
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jan-app.labels" -}}
{{ include "jan-app.selectorLabels" . }}
{{ include "jan-app.commonLabels" . }}
{{- end }}

{{- define "jan-app.migrationLabels" -}}
{{ include "jan-app.migrationSelectorLabels" . }}
{{ include "jan-app.commonLabels" . }}
{{- end }}

{{- define "jan-app.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end }}

{{/* Plain configuration: the values' env plus the version the app reports. */}}
{{- define "jan-app.config" -}}
{{- $env := merge (deepCopy .Values.env) (dict "VERSION" .Values.image.tag) -}}
{{- range $name := keys $env | sortAlpha }}
{{ $name }}: {{ get $env $name | toString | quote }}
{{- end }}
{{- end }}

{{- define "jan-app.secretEnv" -}}
{{- range $name := keys .Values.secretEnv | sortAlpha }}
{{- $ref := get $.Values.secretEnv $name }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}

{{- define "jan-app.envFromSecrets" -}}
{{- range .Values.envFromSecrets }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{- define "jan-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "jan-app.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* DNS to the cluster resolver, which every pod needs before any other egress works. */}}
{{- define "jan-app.dnsEgress" -}}
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
