"""Pods that operators create from custom resources, modelled so the invariants can see them.

Only what the checks read is modelled: labels and declared ports. The facts come from the operators'
own pod builders at the pinned versions (prometheus-operator's StatefulSet for Prometheus and
Alertmanager; CloudNativePG's instance pods). Security contexts are not modelled: those pods are built
by the operator, not by values we pass, so Pod Security is not judged on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from infra.invariants import PodTemplate, name_of

if TYPE_CHECKING:
    from infra.invariants import RenderView

_RELOADER = {"name": "config-reloader", "ports": [{"name": "reloader-web", "containerPort": 8080}]}


def operator_pods(render: RenderView) -> Iterator[PodTemplate]:
    for body in render.objects:
        group = str(body.get("apiVersion", "")).split("/")[0]
        kind = body.get("kind")
        if group == "monitoring.coreos.com" and kind in ("Prometheus", "Alertmanager"):
            yield _prometheus_operator_pod(body)
        elif group == "postgresql.cnpg.io" and kind == "Cluster":
            yield _cnpg_instance(body)


def _prometheus_operator_pod(body: Mapping[str, Any]) -> PodTemplate:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    name, kind = str(meta.get("name")), str(body.get("kind"))
    app = kind.lower()
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/instance": name,
        "operator.prometheus.io/name": name,
        app: name,
        **((spec.get("podMetadata") or {}).get("labels") or {}),
    }
    if kind == "Prometheus":
        labels["operator.prometheus.io/shard"] = "0"
        main = {"name": "prometheus", "ports": [{"name": spec.get("portName") or "web", "containerPort": 9090}]}
    else:
        ports = [
            {"name": spec.get("portName") or "web", "containerPort": 9093},
            {"name": "mesh-tcp", "containerPort": 9094},
            {"name": "mesh-udp", "containerPort": 9094, "protocol": "UDP"},
        ]
        main = {"name": "alertmanager", "ports": ports}
    return PodTemplate(
        owner=name_of(body),
        namespace=str(meta.get("namespace") or "default"),
        labels=labels,
        spec={"containers": [main, _RELOADER]},
        annotations={},
        modelled=True,
    )


def _cnpg_instance(body: Mapping[str, Any]) -> PodTemplate:
    meta = body.get("metadata") or {}
    name = str(meta.get("name"))
    ports = [
        {"name": "postgresql", "containerPort": 5432},
        {"name": "metrics", "containerPort": 9187},
        {"name": "status", "containerPort": 8000},
    ]
    return PodTemplate(
        owner=name_of(body),
        namespace=str(meta.get("namespace") or "default"),
        labels={"cnpg.io/cluster": name, "cnpg.io/podRole": "instance", "cnpg.io/instanceRole": "primary"},
        spec={"containers": [{"name": "postgres", "ports": ports}]},
        annotations={},
        modelled=True,
    )
