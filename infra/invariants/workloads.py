"""Wiring between objects: Services reach declared ports, probes hit declared ports, every Secret and
ConfigMap a pod needs is in the render.

Decisions:
- A Service without a selector (its endpoints are managed elsewhere) is skipped; a Service whose
  selector matches no pod is a finding, since its port can reach nothing.
- A numeric `targetPort` must equal a declared `containerPort`; a named one must name a declared port
  (Kubernetes resolves names per pod, so every selected pod must declare it).
- References marked `optional: true` may be missing. Objects that something other than the render
  creates at run time are listed in `RUNTIME_OBJECTS` with the reason; nothing else is exempt.
- Upstream charts' own template facts that no value can change are listed in `UPSTREAM_EXCEPTIONS`,
  each with why it is harmless; everything a value can fix is fixed instead.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from typing import Any

from infra.invariants import Finding, PodTemplate, RenderView, name_of

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")

# Objects that exist only once something in the cluster makes them: (kind, exact name) -> who makes it.
RUNTIME_OBJECTS: dict[tuple[str, str], str] = {
    ("ConfigMap", "kube-root-ca.crt"): "kube-controller-manager publishes it in every namespace",
    ("Secret", "kube-prometheus-stack-admission"): (
        "kube-prometheus-stack's admission-create hook Job (in the render) writes the webhook certificate"
    ),
    ("Secret", "kedaorg-certs"): "the KEDA operator generates its webhook and metrics-server certificates",
}

# Upstream template facts no value can change, each with why it is harmless: fnmatch patterns over
# `<check> <subject>: <problem>`.
UPSTREAM_EXCEPTIONS: dict[str, str] = {
    "service-ports Service */jaeger: port * targets 142[0-9][0-9], which Deployment */jaeger *": (
        "jaeger 4.x's Service hard-codes Jaeger v1's collector ports, which Jaeger v2 no longer opens; "
        "we send OTLP (4317/4318), which it declares"
    ),
    "probe-ports Deployment */aws-load-balancer-controller container *: *targets port 61779, *": (
        "aws-load-balancer-controller 3.5 probes its health port 61779 without declaring it (hard-coded); "
        "the kubelet probes undeclared ports all the same"
    ),
    "probe-ports Deployment */keda-* container keda-*: *Probe httpGet targets port 8081, *": (
        "keda 2.18 probes its health port 8081 without declaring it (hard-coded); the kubelet probes "
        "undeclared ports all the same"
    ),
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
                            f"port {port.get('name') or port.get('port')} targets {target}, "
                            f"which {pod.owner} does not declare",
                        )
                    )
    return without_upstream_exceptions(findings)


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
    return without_upstream_exceptions(findings)


def references(render: RenderView) -> list[Finding]:
    findings = []
    for pod in render.pod_templates:
        if pod.modelled:
            continue
        for kind, name, where in _referenced(pod):
            if render.find(kind, pod.namespace, name) is None and (kind, name) not in RUNTIME_OBJECTS:
                findings.append(
                    Finding(
                        "references",
                        pod.owner,
                        f"{where} references {kind} {pod.namespace}/{name}, not in the render",
                    )
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


def without_upstream_exceptions(findings: list[Finding]) -> list[Finding]:
    return [
        finding
        for finding in findings
        if not any(
            fnmatch.fnmatchcase(f"{finding.check} {finding.subject}: {finding.problem}", pattern)
            for pattern in UPSTREAM_EXCEPTIONS
        )
    ]


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
