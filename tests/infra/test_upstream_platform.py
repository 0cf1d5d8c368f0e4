"""Observability, data and GPU values against the real upstream charts, rendered with the values each
stack's program passes: the keys are read, and the objects carry what the values ask for."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from infra.components.gpu_pools import node_labels
from infra.config import load_stack_file, stack_file
from infra.specs.otel import (
    ObservabilityInputs,
    collector_chart_values,
    collector_config,
    promql_metric_names,
)
from infra.specs.postgres_metrics import CNPG_METRICS, EXPORTER_METRICS
from infra.versions import CHARTS, IMAGES
from tests.infra.conftest import STACKS, Rendered
from tests.infra.services_helpers import manifest, manifests, values
from tests.infra.upstream_charts import (
    chart_yaml,
    container_ports,
    containers,
    ignored_leaves,
    of_kind,
    one,
    render,
)

CONTROL_PLANE_JOBS = ("kube-controller-manager", "kube-scheduler", "kube-etcd", "kube-proxy")


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


# --- 2: SeaweedFS serves S3 with auth and creates the media bucket ------------------------------------


def test_seaweedfs_reads_the_s3_keys_we_set(rendered: dict[str, Rendered]) -> None:
    dev = values(rendered["dev"], "seaweedfs")
    assert ignored_leaves("seaweedfs", dev, name="seaweedfs", namespace="data") == []


def test_seaweedfs_serves_s3_with_auth_on_our_port_and_creates_the_bucket(
    rendered: dict[str, Rendered],
) -> None:
    dev = values(rendered["dev"], "seaweedfs")
    objects = render("seaweedfs", dev, name="seaweedfs", namespace="data")
    server = one(objects, "Deployment", "seaweedfs-all-in-one")
    (container,) = [c for c in containers(server) if c["name"] != "init"][:1]
    assert container["image"] == IMAGES["seaweedfs"].ref
    command = " ".join([*container.get("command", []), *container.get("args", [])])
    assert "-s3.port=8333" in command
    assert "-s3.config=" in command, "S3 auth reads the identities file"
    volumes = {v["name"]: v for v in _pod(server).get("volumes", [])}
    secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
    assert "seaweedfs-s3-config" in secrets
    assert "8333" in container_ports(server)
    service = one(objects, "Service", "seaweedfs-all-in-one")
    assert 8333 in {port["port"] for port in service["spec"]["ports"]}
    bucket = dev["allInOne"]["s3"]["createBuckets"][0]["name"]
    hook = one(objects, "Job", "seaweedfs-bucket-hook")
    script = " ".join(" ".join([*c.get("command", []), *c.get("args", [])]) for c in containers(hook))
    assert bucket in script


# --- 3: Jaeger runs the pinned image with our resources ------------------------------------------------


def test_jaeger_reads_every_value_and_runs_the_pinned_image_with_our_resources(
    rendered: dict[str, Rendered],
) -> None:
    jaeger = values(rendered["prod"], "jaeger")
    assert ignored_leaves("jaeger", jaeger, name="jaeger", namespace="observability") == []
    objects = render("jaeger", jaeger, name="jaeger", namespace="observability")
    deployment = one(objects, "Deployment", "jaeger")
    (container,) = containers(deployment)
    assert container["image"] == IMAGES["jaeger"].ref
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "512Mi"},
        "limits": {"memory": "2Gi"},
    }
    # The collector's OTLP/gRPC exporter and Grafana's datasource reach the Service the chart makes.
    service = one(objects, "Service", "jaeger")
    assert {4317, 16686} <= {port["port"] for port in service["spec"]["ports"]}


# --- 8: Postgres metrics where each stack's Postgres is -----------------------------------------------


def test_rds_stacks_run_the_postgres_exporter_against_rds(prod: Rendered) -> None:
    exporter = values(prod, "postgres-exporter")
    objects = render(
        "prometheus-postgres-exporter", exporter, name="postgres-exporter", namespace="observability"
    )
    deployment = one(objects, "Deployment")
    (container,) = containers(deployment)
    assert container["image"] == IMAGES["postgres-exporter"].ref
    env = {e["name"]: e for e in container["env"]}
    assert env["DATA_SOURCE_USER"]["value"] == "postgres_exporter"
    assert env["DATA_SOURCE_PASS"]["valueFrom"]["secretKeyRef"] == {
        "name": "postgres-exporter",
        "key": "password",
    }
    uri = env["DATA_SOURCE_URI"]["value"]
    assert uri.startswith("jan-prod-database-postgres.us-east-1.rds.amazonaws.com:5432/postgres")
    assert "sslmode=require" in uri
    secret = manifest(prod, "observability", "Secret", "postgres-exporter")
    assert set(secret.get("stringData") or secret.get("data") or {}) == {"password"}
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert str(service["spec"]["ports"][0]["targetPort"]) in container_ports(deployment)


def test_the_dev_stack_scrapes_cloudnative_pg_itself(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    (monitor,) = manifests(dev, "observability", "PodMonitor")
    cluster = one(
        render("cnpg-cluster", values(dev, "postgres"), name="postgres", namespace="data"), "Cluster"
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector["cnpg.io/cluster"] == cluster["metadata"]["name"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["data"]}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics"}]
    assert cluster["spec"]["monitoring"]["disableDefaultQueries"] is False, "the cnpg_* queries stay on"


def _postgres_source(rendered: Rendered) -> frozenset[str]:
    releases = {item["name"] for item in rendered.of_type("kubernetes:helm.sh/v3:Release")}
    if "postgres-exporter" in releases:
        return EXPORTER_METRICS
    assert manifests(rendered, "observability", "PodMonitor"), "no Postgres metrics at all"
    return CNPG_METRICS


@pytest.mark.parametrize("stack", STACKS)
def test_postgres_dashboard_and_alert_query_what_the_stack_exports(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    exported = _postgres_source(rendered[stack])
    dashboard = manifest(rendered[stack], "observability", "ConfigMap", "grafana-dashboard-postgres")
    panels = json.loads(dashboard["data"]["postgres.json"])["panels"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    rules = manifest(rendered[stack], "observability", "PrometheusRule", "jan-postgres")["spec"]["groups"][0][
        "rules"
    ]
    (alert,) = [rule["expr"] for rule in rules if rule["alert"] == "PostgresConnectionsNearLimit"]
    for expr in [*exprs, alert]:
        branches = [promql_metric_names(branch) for branch in expr.split(" or ")]
        assert any(names and names <= exported for names in branches), expr


# --- 9: the device plugin keeps off Bottlerocket pools -------------------------------------------------


def _matches(term: dict[str, Any], labels: dict[str, str]) -> bool:
    for expression in term["matchExpressions"]:
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def test_the_device_plugin_runs_on_al2023_gpu_pools_only(prod: Rendered) -> None:
    plugin = values(prod, "nvidia-device-plugin")
    objects = render(
        "nvidia-device-plugin", plugin, name="nvidia-device-plugin", namespace="nvidia-device-plugin"
    )
    pools = load_stack_file(stack_file("prod")).gpu_pools
    assert {pool.ami for pool in pools} == {"al2023", "bottlerocket"}
    daemonsets = {item["metadata"]["name"]: _pod(item) for item in of_kind(objects, "DaemonSet")}
    assert "nvidia-device-plugin" in daemonsets
    for name, pod in daemonsets.items():
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        selector = pod.get("nodeSelector", {})
        assert not any(_matches(term, {"kubernetes.io/os": "linux"}) for term in terms), "CPU nodes stay out"
        for pool in pools:
            labels = node_labels(pool)
            lands = any(_matches(term, labels) for term in terms) and selector.items() <= labels.items()
            if pool.ami == "bottlerocket":
                assert not lands, (name, pool.name)
            elif name == "nvidia-device-plugin":
                assert lands, pool.name


# --- 10: no control-plane targets a managed control plane hides ----------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_kube_prometheus_stack_watches_no_hidden_control_plane(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    stack_values = values(rendered[stack], "kube-prometheus-stack")
    objects = render(
        "kube-prometheus-stack", stack_values, name="kube-prometheus-stack", namespace="observability"
    )
    monitors = {item["metadata"]["name"] for item in of_kind(objects, "ServiceMonitor")}
    assert "kube-prometheus-stack-apiserver" in monitors and "kube-prometheus-stack-kubelet" in monitors
    for job in CONTROL_PLANE_JOBS:
        assert not [name for name in monitors if job in name], job
    exprs = [
        rule.get("expr", "")
        for item in of_kind(objects, "PrometheusRule")
        for group in item["spec"]["groups"]
        for rule in group["rules"]
    ]
    assert exprs, "the default rules stay on"
    for job in CONTROL_PLANE_JOBS:
        assert not [expr for expr in exprs if f'job="{job}"' in expr], job
    assert not [expr for expr in exprs if "etcd_" in expr]


# --- 11: pins the charts expect, component names the collector does not deprecate ---------------------


def test_grafana_runs_the_version_its_chart_expects(prod: Rendered) -> None:
    assert IMAGES["grafana"].tag == chart_yaml("grafana")["appVersion"]
    objects = render("grafana", values(prod, "grafana"), name="grafana", namespace="observability")
    images = {c["name"]: c["image"] for c in containers(one(objects, "Deployment", "grafana"))}
    assert images["grafana"] == f"docker.io/{IMAGES['grafana'].ref}"


def test_chart_pins_of_fixed_images() -> None:
    assert chart_yaml("seaweedfs")["version"] == CHARTS["seaweedfs"].version == "4.44.0"
    assert IMAGES["seaweedfs"].tag == chart_yaml("seaweedfs")["appVersion"]
    assert IMAGES["postgres-exporter"].tag == chart_yaml("prometheus-postgres-exporter")["appVersion"]
    assert IMAGES["otel-collector"].tag == chart_yaml("opentelemetry-collector")["appVersion"]


def test_collector_uses_the_exporter_names_of_its_version() -> None:
    # otlp/otlphttp became deprecated aliases of otlp_grpc/otlp_http in collector v0.144.0.
    major, minor, _ = (int(part) for part in IMAGES["otel-collector"].tag.split("."))
    assert (major, minor) >= (0, 144)
    kinds = {name.split("/")[0] for name in collector_config(ObservabilityInputs())["exporters"]}
    assert kinds == {"otlp_grpc", "otlp_http"}


def test_collector_chart_renders_our_config_with_the_new_names() -> None:
    # The builder's values themselves: they carry the nulls that delete the chart's default components.
    collector = collector_chart_values(ObservabilityInputs(), replicas=2)
    objects = render("opentelemetry-collector", collector, name="otel-collector", namespace="observability")
    (config_map,) = [c for c in of_kind(objects, "ConfigMap") if "relay" in c["data"]]
    relay = yaml.safe_load(config_map["data"]["relay"])
    assert set(relay["exporters"]) == {"otlp_grpc/jaeger", "otlp_http/prometheus"}
    assert relay["service"]["pipelines"]["traces"]["exporters"] == ["otlp_grpc/jaeger"]
