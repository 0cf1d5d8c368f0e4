"""Observability: OpenTelemetry Collector, kube-prometheus-stack, Jaeger v2, Grafana, DCGM exporter.

Every value comes from `infra.specs.otel` / `infra.specs.alerts` (see their decisions): apps and Kong
push OTLP to the collector, which sends traces to Jaeger and metrics to Prometheus' OTLP receiver;
Prometheus scrapes vLLM, Kong, Keycloak, CloudNativePG and DCGM through ServiceMonitors. Decisions:
- Grafana is its own release from the `grafana-community` repository (kube-prometheus-stack's bundled
  Grafana is switched off), with the datasources provisioned under fixed uids and the dashboards as
  labelled ConfigMaps its sidecar loads, so dashboards are reviewed files, not clicks.
- The alert rules are `PrometheusRule` objects of the program (not chart values), so they show up in
  previews and are validated in the offline render. Dashboards and rules ship with what exports their
  metrics (`infra.specs.monitoring`): the apps' and Postgres' here, the GPUs' with the DCGM exporter,
  Kong's and vLLM's with the gateway and the model servers.
- The DCGM exporter runs only on stacks with GPU pools, on GPU nodes only (their taint tolerated).
- Postgres metrics: a PodMonitor on CloudNativePG's own exporter where CNPG runs, the
  prometheus-postgres-exporter release where the server is RDS (`infra.specs.postgres_metrics`).
- kube-prometheus-stack does not watch the control plane parts a managed control plane (EKS) or kind
  hides (controller manager, scheduler, etcd, kube-proxy): their `absent()` alerts would never clear.
- Grafana's admin password is generated (Secret `grafana-admin`; the stack outputs say how to read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import helm
from infra.components.gpu_pools import GPU_PRESENT_LABEL, GPU_TAINT_KEY
from infra.components.objects import k8s_object, monitoring_objects, object_name
from infra.specs.otel import (
    ObservabilityInputs,
    collector_chart_values,
    grafana_datasources,
    prometheus_values,
)
from infra.specs.postgres_metrics import (
    EXPORTER_PASSWORD_KEY,
    EXPORTER_RELEASE,
    EXPORTER_SECRET,
    cnpg_pod_monitor,
    exporter_values,
)
from infra.versions import CHARTS, IMAGES

GRAFANA_ADMIN_SECRET = "grafana-admin"  # noqa: S105 - a Secret's name
GRAFANA_PASSWORD_KEY = "admin-password"  # noqa: S105 - a key in that Secret


@dataclass(frozen=True, kw_only=True)
class CnpgMetrics:
    """A CloudNativePG `Cluster` whose instances export their own metrics."""

    namespace: str
    cluster: str


@dataclass(frozen=True, kw_only=True)
class ExporterTarget:
    """A Postgres server without its own exporter (RDS), read by the exporter with a `pg_monitor` login."""

    host: pulumi.Input[str]
    port: pulumi.Input[int]
    user: str
    password: pulumi.Input[str]


@dataclass(frozen=True, kw_only=True)
class ObservabilityArgs:
    inputs: ObservabilityInputs
    gpus: bool
    collector_replicas: int
    depends_on: list[pulumi.Resource]
    # The GPU node groups the DCGM exporter's DaemonSet runs on.
    gpu_node_groups: list[pulumi.Resource] = field(default_factory=list)
    postgres: CnpgMetrics | ExporterTarget | None = None
    """Where the Postgres dashboard and alert get their metrics (`infra.specs.postgres_metrics`)."""


class Observability(pulumi.ComponentResource):
    """The telemetry pipeline and its dashboards and alerts; `monitoring` is what ServiceMonitors need."""

    monitoring: pulumi.Resource

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jan:platform:Observability", name, None, opts)
        namespace = args.inputs.namespace
        on_cluster = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        prometheus = helm.upstream_release(
            "kube-prometheus-stack",
            CHARTS["kube-prometheus-stack"],
            namespace=namespace,
            values=stack_values(),
            opts=on_cluster,
        )
        self.monitoring = prometheus
        after_crds = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[prometheus]))
        helm.upstream_release(
            "otel-collector",
            CHARTS["opentelemetry-collector"],
            namespace=namespace,
            values=collector_chart_values(args.inputs, replicas=args.collector_replicas),
            opts=on_cluster,
        )
        helm.upstream_release(
            "jaeger", CHARTS["jaeger"], namespace=namespace, values=jaeger_values(), opts=on_cluster
        )
        password = random.RandomPassword(
            f"{name}-grafana-admin", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=GRAFANA_ADMIN_SECRET, namespace=namespace, labels={"app.kubernetes.io/part-of": "jan"}
            ),
            string_data=pulumi.Output.secret({"admin-user": "admin", GRAFANA_PASSWORD_KEY: password.result}),
            opts=on_cluster,
        )
        # The apps' metrics arrive through the collector: their dashboards and rules ship with it.
        apps_monitoring = monitoring_objects(name, "apps", namespace, on_cluster, crds=[prometheus])
        helm.upstream_release(
            "grafana",
            CHARTS["grafana"],
            namespace=namespace,
            values=grafana_values(args.inputs),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[admin, *apps_monitoring])
            ),
        )
        if args.postgres is not None:
            _postgres_metrics(name, args.postgres, namespace, on_cluster, after_crds)
        if args.gpus:
            helm.upstream_release(
                "dcgm-exporter",
                CHARTS["dcgm-exporter"],
                namespace=namespace,
                values=dcgm_values(),
                opts=pulumi.ResourceOptions.merge(
                    after_crds, pulumi.ResourceOptions(depends_on=args.gpu_node_groups)
                ),
            )
            monitoring_objects(name, "dcgm", namespace, after_crds)
        self.register_outputs({})


# Control-plane components a managed control plane (EKS) or kind does not let Prometheus scrape: their
# Services, ServiceMonitors and rules would only produce `absent(up{...})` alerts that never clear.
UNSCRAPABLE_CONTROL_PLANE = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")


def _postgres_metrics(
    name: str,
    postgres: CnpgMetrics | ExporterTarget,
    namespace: str,
    on_cluster: pulumi.ResourceOptions,
    after_crds: pulumi.ResourceOptions,
) -> None:
    monitoring_objects(name, "postgres", namespace, after_crds)
    if isinstance(postgres, CnpgMetrics):
        monitor = cnpg_pod_monitor(postgres.namespace, postgres.cluster, namespace)
        k8s_object(f"{name}-{object_name(monitor)}", monitor, after_crds)
        return
    secret = k8s.core.v1.Secret(
        f"{name}-postgres-exporter",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=EXPORTER_SECRET, namespace=namespace, labels={"app.kubernetes.io/part-of": "jan"}
        ),
        string_data={EXPORTER_PASSWORD_KEY: pulumi.Output.secret(postgres.password)},
        opts=on_cluster,
    )
    helm.upstream_release(
        EXPORTER_RELEASE,
        CHARTS["prometheus-postgres-exporter"],
        namespace=namespace,
        # The chart builds its connection URI from a string port.
        values=exporter_values(
            postgres.host, pulumi.Output.from_input(postgres.port).apply(str), postgres.user
        ),
        opts=pulumi.ResourceOptions.merge(after_crds, pulumi.ResourceOptions(depends_on=[secret])),
    )


def stack_values() -> dict[str, Any]:
    values = prometheus_values()
    values["grafana"] = {"enabled": False}  # Grafana is its own release (see above)
    values |= {component: {"enabled": False} for component in UNSCRAPABLE_CONTROL_PLANE}
    return values


def jaeger_values() -> dict[str, Any]:
    """Jaeger v2 all-in-one with in-memory storage: traces are for debugging, kept for hours.

    Chart 4.x runs the `jaeger` Deployment from `jaeger.*` (no `allInOne`, no `provisionDataStore`);
    without a `userconfig` the image's built-in all-in-one config applies, whose storage is memory.
    """
    image = IMAGES["jaeger"]
    return {
        "fullnameOverride": "jaeger",
        "jaeger": {
            "image": {"repository": image.repository, "tag": image.tag},
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        },
    }


def grafana_values(inputs: ObservabilityInputs) -> dict[str, Any]:
    image = IMAGES["grafana"]
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "admin": {
            "existingSecret": GRAFANA_ADMIN_SECRET,
            "userKey": "admin-user",
            "passwordKey": GRAFANA_PASSWORD_KEY,
        },
        "datasources": {"datasources.yaml": grafana_datasources(inputs)},
        "sidecar": {
            "dashboards": {
                "enabled": True,
                "label": "grafana_dashboard",
                "labelValue": "1",
                "folderAnnotation": "grafana_folder",
                "provider": {"foldersFromFilesStructure": True},
            }
        },
        "persistence": {"enabled": False},
    }


def dcgm_values() -> dict[str, Any]:
    image = IMAGES["dcgm-exporter"]
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "serviceMonitor": {"enabled": True, "interval": "15s"},
    }
