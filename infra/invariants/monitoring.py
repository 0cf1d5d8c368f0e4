"""Monitoring wiring: monitors select targets, Prometheus selects the monitors, every query names a
metric the stack exports, every autoscaler has a metrics source, the alert rules load in Prometheus.

Decisions:
- A metric source counts in a stack only when Prometheus really gets its metrics there: a scraped
  source (Kong, vLLM, DCGM) needs a ServiceMonitor/PodMonitor that a Prometheus selects and that
  reaches pods running the source's image; CloudNativePG's exporter needs a `Cluster` with
  `monitoring.enablePodMonitor` (the operator then creates the PodMonitor); the apps' OTLP metrics
  need a collector whose metrics pipeline exports somewhere and a Prometheus with its OTLP receiver on.
  The metric names per source are `infra.specs.otel.METRICS_BY_SOURCE`.
- Queries checked are ours: the alert rules and dashboards labelled `app.kubernetes.io/part-of: jan`.
  Upstream default rules are held only to `promtool check rules`.
- Resource metrics (HPA `Resource` metrics, KEDA `cpu`/`memory` triggers) need the
  `v1beta1.metrics.k8s.io` API (metrics-server, as a chart or the EKS add-on); external metrics
  need `v1beta1.external.metrics.k8s.io` (KEDA's metrics server). A Prometheus trigger must point
  at a Service and port in the render.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.invariants import Finding, PodTemplate, RenderView, name_of, selects
from infra.specs.otel import METRICS_BY_SOURCE, promql_metric_names
from infra.versions import IMAGES

_SCRAPED_IMAGES = {
    "kong": IMAGES["kong"].repository,
    "vllm": IMAGES["vllm"].repository,
    "dcgm": IMAGES["dcgm-exporter"].repository,
    "postgres-exporter": IMAGES["postgres-exporter"].repository,
}
_OURS = "app.kubernetes.io/part-of"
# EKS add-ons that serve an aggregated metrics API (registered by the add-on, outside the render).
_EKS_ADDON_APIS = {"metrics-server": "v1beta1.metrics.k8s.io"}
_SERVICE_URL = re.compile(r"^https?://([a-z0-9-]+)\.([a-z0-9-]+)(?:\.svc(?:\.[a-z.]+)?)?:(\d+)")


def monitors_select_targets(render: RenderView) -> list[Finding]:
    findings = []
    for monitor in render.of_kind("ServiceMonitor", "PodMonitor"):
        subject = name_of(monitor)
        if not _prometheus_selecting(render, monitor):
            findings.append(Finding("monitors", subject, "no Prometheus in the render selects it"))
        if not list(_scraped_pods(render, monitor)):
            findings.append(Finding("monitors", subject, "selects no endpoint of any pod"))
    return findings


def queries_name_exported_metrics(render: RenderView) -> list[Finding]:
    exported = frozenset().union(*(METRICS_BY_SOURCE[source] for source in present_sources(render)))
    findings = []
    for subject, expr in our_queries(render):
        missing = sorted(missing_metrics(expr, exported))
        if missing:
            findings.append(
                Finding(
                    "metrics", subject, f"queries {', '.join(missing)}, which nothing in the stack exports"
                )
            )
    return findings


def present_sources(render: RenderView) -> set[str]:
    """The metric sources whose metrics reach Prometheus in this render (see the module's decisions)."""
    present = set()
    for monitor in render.of_kind("ServiceMonitor", "PodMonitor"):
        if not _prometheus_selecting(render, monitor):
            continue
        for pod in _scraped_pods(render, monitor):
            if pod.owner.startswith("Cluster ") and pod.modelled:
                present.add("cnpg")  # a CloudNativePG instance: its exporter serves `metrics`
            images = {_repository(str(c.get("image", ""))) for c in pod.containers(init=False)}
            present |= {source for source, image in _SCRAPED_IMAGES.items() if _repository(image) in images}
    for cluster in render.of_kind("Cluster"):
        if str(cluster.get("apiVersion", "")).startswith("postgresql.cnpg.io/"):
            if ((cluster.get("spec") or {}).get("monitoring") or {}).get("enablePodMonitor"):
                present.add("cnpg")
    if _otlp_metrics_reach_prometheus(render):
        present.add("apps")
    return present


def missing_metrics(expr: str, exported: frozenset[str]) -> set[str]:
    """The metrics a query needs that nothing exports. `a or b` needs only one side: a dashboard
    that works on every stack queries each source's metric and keeps whichever exists."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    return _group_missing(text, exported)


def _group_missing(text: str, exported: frozenset[str]) -> set[str]:
    alternatives = [_alternative_missing(part, exported) for part in _split_top_level_or(text)]
    return min(alternatives, key=len)


def _alternative_missing(text: str, exported: frozenset[str]) -> set[str]:
    missing: set[str] = set()
    outer, depth, start = "", 0, 0
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                start = index + 1
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                missing |= _group_missing(text[start:index], exported)
                outer += "()"
        elif depth == 0:
            outer += char
    return missing | (promql_metric_names(outer) - exported)


def _split_top_level_or(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    pieces = re.split(r"(\(|\)|\bor\b)", text)
    for piece in pieces:
        if piece == "(":
            depth += 1
        elif piece == ")":
            depth -= 1
        if piece == "or" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += piece
    return [*parts, current]


def our_queries(render: RenderView) -> Iterator[tuple[str, str]]:
    for rule_object in render.of_kind("PrometheusRule"):
        if ((rule_object.get("metadata") or {}).get("labels") or {}).get(_OURS) != "jan":
            continue
        for group in (rule_object.get("spec") or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                yield (
                    f"{name_of(rule_object)} rule {rule.get('alert') or rule.get('record')}",
                    str(rule["expr"]),
                )
    for config_map in render.of_kind("ConfigMap"):
        labels = (config_map.get("metadata") or {}).get("labels") or {}
        if labels.get(_OURS) != "jan" or "grafana_dashboard" not in labels:
            continue
        for key, text in (config_map.get("data") or {}).items():
            dashboard = json.loads(text)
            for panel in _panels(dashboard.get("panels") or []):
                for target in panel.get("targets") or []:
                    if target.get("expr"):
                        yield f"dashboard {key} panel {panel.get('title')!r}", str(target["expr"])
            for variable in (dashboard.get("templating") or {}).get("list") or []:
                query = variable.get("query")
                text_query = query.get("query") if isinstance(query, dict) else query
                match = re.match(r"\s*label_values\(\s*([^,)]+)", str(text_query or ""))
                if variable.get("type") == "query" and match:
                    yield f"dashboard {key} variable {variable.get('name')}", match.group(1)


def autoscalers_have_metrics(render: RenderView) -> list[Finding]:
    services = {str(body["metadata"]["name"]) for body in render.of_kind("APIService")}
    services |= {
        _EKS_ADDON_APIS[item["inputs"]["addonName"]]
        for item in render.resources
        if item["type"] == "aws:eks/addon:Addon" and item["inputs"].get("addonName") in _EKS_ADDON_APIS
    }
    resource_metrics = "v1beta1.metrics.k8s.io" in services
    findings = []
    for hpa in render.of_kind("HorizontalPodAutoscaler"):
        if ((hpa.get("metadata") or {}).get("labels") or {}).get(
            "app.kubernetes.io/managed-by"
        ) == "keda-operator":
            continue
        for metric in (hpa.get("spec") or {}).get("metrics") or []:
            kind = metric.get("type")
            needed = {
                "Resource": "v1beta1.metrics.k8s.io",
                "ContainerResource": "v1beta1.metrics.k8s.io",
                "External": "v1beta1.external.metrics.k8s.io",
            }.get(kind, "v1beta2.custom.metrics.k8s.io")
            if needed not in services:
                findings.append(
                    Finding(
                        "autoscaling",
                        name_of(hpa),
                        f"{kind} metrics need the {needed} API, which nothing in the stack serves",
                    )
                )
    for scaled in render.of_kind("ScaledObject"):
        if "v1beta1.external.metrics.k8s.io" not in services:
            findings.append(
                Finding(
                    "autoscaling",
                    name_of(scaled),
                    "no KEDA metrics server (v1beta1.external.metrics.k8s.io) in the stack",
                )
            )
        namespace = str((scaled.get("metadata") or {}).get("namespace") or "default")
        for trigger in (scaled.get("spec") or {}).get("triggers") or []:
            kind = trigger.get("type")
            if kind in ("cpu", "memory") and not resource_metrics:
                findings.append(
                    Finding(
                        "autoscaling",
                        name_of(scaled),
                        f"a {kind} trigger needs metrics-server (v1beta1.metrics.k8s.io)",
                    )
                )
            if kind == "prometheus":
                address = str((trigger.get("metadata") or {}).get("serverAddress", ""))
                if not _service_serves(render, address, namespace):
                    findings.append(
                        Finding(
                            "autoscaling",
                            name_of(scaled),
                            f"Prometheus trigger server {address} is no Service port in the render",
                        )
                    )
    return findings


def promtool_check_rules(render: RenderView, promtool: str | None = None) -> list[Finding]:
    """`promtool check rules` over every PrometheusRule in the render (each as its own rule file)."""
    binary = promtool or shutil.which("promtool")
    if binary is None:
        raise FileNotFoundError("promtool is not installed (Debian package `prometheus`)")
    findings = []
    with tempfile.TemporaryDirectory(prefix="rules-") as tmp:
        for index, rule_object in enumerate(render.of_kind("PrometheusRule")):
            path = Path(tmp) / f"{index}.yaml"
            path.write_text(yaml.safe_dump({"groups": (rule_object.get("spec") or {}).get("groups") or []}))
            result = subprocess.run(  # noqa: S603 - a fixed binary on our own file
                [binary, "check", "rules", str(path)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                detail = (result.stderr or result.stdout).strip().replace(str(path), "rules")
                findings.append(Finding("promtool", name_of(rule_object), detail))
    return findings


def _panels(panels: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def _repository(image: str) -> str:
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":")[0]
    return name.removeprefix("docker.io/").removeprefix("library/")


def _prometheus_selecting(render: RenderView, monitor: Mapping[str, Any]) -> bool:
    kind = "serviceMonitor" if monitor.get("kind") == "ServiceMonitor" else "podMonitor"
    meta = monitor.get("metadata") or {}
    for prometheus in render.of_kind("Prometheus"):
        spec = prometheus.get("spec") or {}
        home = (prometheus.get("metadata") or {}).get("namespace")
        namespace_selector = spec.get(f"{kind}NamespaceSelector")
        if namespace_selector is None:
            in_scope = meta.get("namespace") == home
        else:
            labels = {
                "kubernetes.io/metadata.name": str(meta.get("namespace")),
                **render.namespaces.get(str(meta.get("namespace")), {}),
            }
            in_scope = selects(namespace_selector, labels)
        if in_scope and selects(spec.get(f"{kind}Selector"), meta.get("labels") or {}):
            return True
    return False


def _scraped_pods(render: RenderView, monitor: Mapping[str, Any]) -> Iterator[PodTemplate]:
    spec, meta = monitor.get("spec") or {}, monitor.get("metadata") or {}
    namespaces = _monitor_namespaces(render, spec.get("namespaceSelector") or {}, str(meta.get("namespace")))
    selector = spec.get("selector") or {}
    if monitor.get("kind") == "PodMonitor":
        for pod in render.pod_templates:
            if pod.namespace in namespaces and selects(selector, pod.labels):
                wanted = spec.get("podMetricsEndpoints") or []
                if any(_pod_has(pod, endpoint) for endpoint in wanted):
                    yield pod
        return
    for service in render.services:
        service_meta, service_spec = service.get("metadata") or {}, service.get("spec") or {}
        if service_meta.get("namespace") not in namespaces or not selects(
            selector, service_meta.get("labels") or {}
        ):
            continue
        names = {port.get("name") for port in service_spec.get("ports") or []}
        if not service_spec.get("selector"):  # endpoints managed outside (API server, kubelet)
            if any(endpoint.get("port") in names for endpoint in spec.get("endpoints") or []):
                yield PodTemplate(name_of(service), str(service_meta["namespace"]), {}, {}, {}, modelled=True)
            continue
        for pod in render.pods_selected(str(service_meta["namespace"]), service_spec["selector"]):
            for endpoint in spec.get("endpoints") or []:
                target = endpoint.get("targetPort")
                if endpoint.get("port") in names or (
                    target is not None
                    and _pod_has(pod, {"portNumber": target} if isinstance(target, int) else {"port": target})
                ):
                    yield pod
                    break


def _pod_has(pod: PodTemplate, endpoint: Mapping[str, Any]) -> bool:
    if endpoint.get("portNumber") is not None:
        return any(port.get("containerPort") == endpoint["portNumber"] for port in pod.ports())
    return any(port.get("name") == endpoint.get("port") for port in pod.ports())


def _monitor_namespaces(render: RenderView, selector: Mapping[str, Any], own: str) -> set[str]:
    everywhere = {str((body.get("metadata") or {}).get("namespace")) for body in render.objects}
    if selector.get("any"):
        return everywhere
    return set(selector.get("matchNames") or []) or {own}


def _otlp_metrics_reach_prometheus(render: RenderView) -> bool:
    receiving = any(
        (p.get("spec") or {}).get("enableOTLPReceiver")
        or "otlp-write-receiver" in ((p.get("spec") or {}).get("enableFeatures") or [])
        for p in render.of_kind("Prometheus")
    )
    if not receiving:
        return False
    for config_map in render.of_kind("ConfigMap"):
        for text in (config_map.get("data") or {}).values():
            if "pipelines" not in text or "receivers" not in text:
                continue
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            pipelines = (
                ((config or {}).get("service") or {}).get("pipelines") or {}
                if isinstance(config, dict)
                else {}
            )
            if any(
                name.split("/")[0] == "metrics" and pipe.get("exporters") for name, pipe in pipelines.items()
            ):
                return True
    return False


def _service_serves(render: RenderView, address: str, namespace: str) -> bool:
    match = _SERVICE_URL.match(address)
    if match is None:
        return False
    name, service_namespace, port = match.group(1), match.group(2), int(match.group(3))
    service = render.find("Service", service_namespace or namespace, name)
    return service is not None and any(
        p.get("port") == port for p in (service.get("spec") or {}).get("ports") or []
    )
