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


def cluster_services(render: RenderView) -> Iterator[dict[str, Any]]:
    """Services every cluster has, or that an operator in the render creates, with no selector (their
    endpoints are the control plane or the nodes): the API server's `default/kubernetes`, and the
    kubelet Service the Prometheus Operator keeps when given `--kubelet-service`."""
    yield _service(
        "default", "kubernetes", {"component": "apiserver", "provider": "kubernetes"}, {"https": 443}
    )
    for pod in _workload_args(render):
        for arg in pod:
            if arg.startswith("--kubelet-service="):
                namespace, name = arg.split("=", 1)[1].split("/", 1)
                labels = {
                    "app.kubernetes.io/name": "kubelet",
                    "app.kubernetes.io/managed-by": "prometheus-operator",
                    "k8s-app": "kubelet",
                }
                yield _service(
                    namespace, name, labels, {"https-metrics": 10250, "http-metrics": 10255, "cadvisor": 4194}
                )


def cluster_pods() -> Iterator[PodTemplate]:
    """Pods every supported cluster runs that charts monitor: CoreDNS (EKS, kind, k3d, minikube)."""
    ports = [
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "containerPort": 53},
        {"name": "metrics", "containerPort": 9153},
    ]
    yield PodTemplate(
        owner="Deployment kube-system/coredns (the cluster's)",
        namespace="kube-system",
        labels={"k8s-app": "kube-dns"},
        spec={"containers": [{"name": "coredns", "ports": ports}]},
        annotations={},
        modelled=True,
    )


def _service(namespace: str, name: str, labels: dict[str, str], ports: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"ports": [{"name": key, "port": port} for key, port in ports.items()]},
    }


def _workload_args(render: RenderView) -> Iterator[list[str]]:
    for pod in render.pod_templates:
        for container in pod.containers(init=False):
            yield [str(arg) for arg in container.get("args") or []]


def operator_pods(render: RenderView) -> Iterator[PodTemplate]:
    yield from cluster_pods()
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
        main = {
            "name": "prometheus",
            "ports": [{"name": spec.get("portName") or "web", "containerPort": 9090}],
        }
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
