"""Which dashboards and alert rules watch which metric source.

Each source's dashboards and rules ship with the component that runs the source, never on their own:
the apps' (through the collector) with observability, Kong's with the gateway, vLLM's with the model
servers, the GPUs' with the DCGM exporter, Postgres' with whichever Postgres exporter the stack has.
A stack without vLLM or GPUs (dev, on CPU) thus carries no panel or alert that could never show
data, and the whole-render invariant (`infra.invariants.monitoring`) holds every stack to it.
"""

from __future__ import annotations

from typing import Any

from infra.specs.alerts import RULE_SOURCES, AlertThresholds, alert_rules
from infra.specs.otel import dashboard_configmaps

DASHBOARDS_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "apps": ("jan-chat",),
    "kong": ("kong",),
    "postgres": ("postgres",),  # CloudNativePG's metrics or the exporter's (`infra.specs.postgres_metrics`)
    "vllm": ("vllm",),
    "dcgm": ("gpu",),
}


def monitoring_manifests(
    source: str, namespace: str, thresholds: AlertThresholds | None = None
) -> list[dict[str, Any]]:
    """The dashboards (ConfigMaps for Grafana's sidecar) and the alert rules of one metric source."""
    found = dashboard_configmaps(namespace, DASHBOARDS_BY_SOURCE[source])
    if source in RULE_SOURCES:
        found.append(alert_rules(namespace, source, thresholds))
    return found
