"""Wiring between objects: Services reach declared ports, probes hit declared ports, every Secret and
ConfigMap a pod needs is in the render.

Decisions:
- A Service without a selector (its endpoints are managed elsewhere) is skipped; a Service whose
  selector matches no pod is a finding, since its port can reach nothing.
- A numeric `targetPort` must equal a declared `containerPort`; a named one must name a declared port
  (Kubernetes resolves names per pod, so every selected pod must declare it).
- References marked `optional: true` may be missing. Secrets that something other than the render
  creates at run time are listed in `RUNTIME_SECRETS` with the reason; nothing else is exempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from infra.invariants import Finding, PodTemplate, RenderView, name_of

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")

# Secrets that exist only once something in the cluster makes them: (namespace or "*", name prefix).
RUNTIME_SECRETS: dict[tuple[str, str], str] = {
    ("*", "prometheus-"): "the Prometheus Operator writes each Prometheus' generated config Secret",
    ("*", "alertmanager-"): "the Prometheus Operator writes Alertmanager's generated config Secret",
}


def service_ports(render: RenderView) -> list[Finding]:
    findings = []
    for service in render.of_kind("Service"):
        spec, meta = service.get("spec") or {}, service.get("metadata") or {}
        selector = spec.get("selector")
        if not selector or spec.get("type") == "ExternalName":
            continue
        pods = render.pods_selected(str(meta.get("namespace") or "default"), selector)
        if not pods:
            findings.append(Finding("service-ports", name_of(service), f"selects no pod ({selector})"))
            continue
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for pod in pods:
                if not _declares(pod, target):
                    findings.append(
                        Finding(
                            "service-ports",
                            name_of(service),
                            f"port {port.get('name') or port.get('port')} targets {target}, which {pod.owner} "
                            "does not declare",
                        )
                    )
    return findings


def probe_ports(render: RenderView) -> list[Finding]:
    findings = []
    for pod in render.pod_templates:
        for container in pod.containers():
            for kind in _PROBES:
                probe = container.get(kind) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    port = (probe.get(handler) or {}).get("port")
                    if port is not None and not _declares_in(container, port):
                        findings.append(
                            Finding(
                                "probe-ports",
                                f"{pod.owner} container {container.get('name')}",
                                f"{kind} {handler} targets port {port}, which the container does not declare",
                            )
                        )
    return findings


def references(render: RenderView) -> list[Finding]:
    findings = []
    for pod in render.pod_templates:
        if pod.modelled:
            continue
        for kind, name, where in _referenced(pod):
            if render.find(kind, pod.namespace, name) is None and not _runtime_secret(kind, pod.namespace, name):
                findings.append(
                    Finding("references", pod.owner, f"{where} references {kind} {pod.namespace}/{name}, not in the render")
                )
    return findings


def _declares(pod: PodTemplate, target: Any) -> bool:
    if isinstance(target, int):
        return any(port.get("containerPort") == target for port in pod.ports())
    return any(port.get("name") == target for port in pod.ports())


def _declares_in(container: Mapping[str, Any], target: Any) -> bool:
    ports = container.get("ports") or []
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return any(port.get("containerPort") == int(target) for port in ports)
    return any(port.get("name") == target for port in ports)


def _runtime_secret(kind: str, namespace: str, name: str) -> bool:
    return kind == "Secret" and any(
        scope in ("*", namespace) and name.startswith(prefix) for scope, prefix in RUNTIME_SECRETS
    )


def _referenced(pod: PodTemplate) -> Iterator[tuple[str, str, str]]:
    """(kind, name, where) of every required Secret/ConfigMap reference of the pod."""
    for container in pod.containers():
        where = f"container {container.get('name')}"
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = source.get(key)
                if ref and not ref.get("optional"):
                    yield kind, str(ref["name"]), f"{where} env {env.get('name')}"
        for source in container.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = source.get(key)
                if ref and not ref.get("optional"):
                    yield kind, str(ref["name"]), f"{where} envFrom"
    for volume in pod.spec.get("volumes") or []:
        where = f"volume {volume.get('name')}"
        secret, config_map = volume.get("secret"), volume.get("configMap")
        if secret and not secret.get("optional"):
            yield "Secret", str(secret["secretName"]), where
        if config_map and not config_map.get("optional"):
            yield "ConfigMap", str(config_map["name"]), where
        for source in (volume.get("projected") or {}).get("sources") or []:
            for key, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                ref = source.get(key)
                if ref and not ref.get("optional"):
                    yield kind, str(ref["name"]), where
    for ref in pod.spec.get("imagePullSecrets") or []:
        yield "Secret", str(ref["name"]), "imagePullSecrets"
