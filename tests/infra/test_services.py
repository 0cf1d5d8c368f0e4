"""Inference, search and sandbox, observability and network security in the dev and prod renders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.gateway.routes import AppName
from infra.config import stack_file
from infra.specs.otel import dashboard_names
from infra.versions import CHARTS, EXACT_TAG
from tests.infra.conftest import STACKS, Rendered, render_stack
from tests.infra.services_helpers import RELEASE, has_manifest, manifest, manifests, release, values

OWNED_NAMESPACES = ("jan", "gateway", "identity", "inference", "search", "sandbox")


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_prod_serves_each_model_with_vllm_on_its_gpu_pool(prod: Rendered) -> None:
    expected = {"vllm-qwen3-8b": ("l4", "1", 2), "vllm-qwen3-32b-awq": ("l40s", "1", 1)}
    for name, (pool, gpus, replicas) in expected.items():
        deployment = manifest(prod, "inference", "Deployment", name)
        pod = _pod(deployment)
        assert pod["nodeSelector"]["jan.ai/pool"] == pool
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ]
        (container,) = pod["containers"]
        assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert container["startupProbe"]["httpGet"]["path"] == "/health"
        key = {e["name"]: e for e in container["env"]}["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert key == {"name": "model-server-api-key", "key": "api-key"}
        assert deployment["spec"]["replicas"] == replicas
        assert manifest(prod, "inference", "Service", name)["spec"]["ports"][0]["port"] == 8000
    assert (
        "--enable-prefix-caching"
        in _pod(manifest(prod, "inference", "Deployment", "vllm-qwen3-8b"))["containers"][0]["args"]
    )
    assert not has_manifest(prod, "inference", "Deployment", "llama-cpp")


def test_prod_scales_models_on_queue_depth_with_keda(prod: Rendered) -> None:
    assert release(prod, "keda")["version"] == CHARTS["keda"].version
    scaled = manifest(prod, "inference", "ScaledObject", "vllm-qwen3-8b")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "vllm-qwen3-8b"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 6)
    assert "vllm:num_requests_waiting" in scaled["spec"]["triggers"][0]["metadata"]["query"]
    deployment = prod.one(
        "kubernetes:apps/v1:Deployment", "jan-prod-inference-inference-deployment-vllm-qwen3-8b"
    )
    assert deployment["options"]["ignoreChanges"] == ["spec.replicas"]
    # Several replicas cannot share a ReadWriteOnce volume: weights go to node disk.
    volumes = {
        v["name"]: v for v in _pod(manifest(prod, "inference", "Deployment", "vllm-qwen3-8b"))["volumes"]
    }
    assert "emptyDir" in volumes["weights"]


def test_llm_api_providers_point_at_the_model_servers(rendered: dict[str, Rendered]) -> None:
    def urls(stack: str) -> list[str]:
        text = manifest(rendered[stack], "jan", "ConfigMap", "llm-api-files")["data"]["providers.yml"]
        return [entry["base_url"] for entry in yaml.safe_load(text)["providers"]]

    assert urls("prod") == [
        "http://vllm-qwen3-8b.inference.svc.cluster.local:8000/v1",
        "http://vllm-qwen3-32b-awq.inference.svc.cluster.local:8000/v1",
    ]
    assert urls("dev") == ["http://llama-cpp.inference.svc.cluster.local:8080/v1"]
    for stack in ("prod", "dev"):
        secret = manifest(rendered[stack], "jan", "Secret", "model-server-api-key")
        assert list(secret["stringData"]) == ["api-key"]


def test_dev_runs_the_cpu_model_server_and_no_gpu_workload(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    deployment = manifest(dev, "inference", "Deployment", "llama-cpp")
    pod = _pod(deployment)
    assert "tolerations" not in pod and "nodeSelector" not in pod
    assert pod["containers"][0]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server-b")
    assert not has_manifest(dev, "inference", "Deployment", "vllm-*")
    names = {item["name"] for item in dev.of_type(RELEASE)}
    assert "keda" not in names and "dcgm-exporter" not in names


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_searxng_serves_json_with_a_generated_secret(stack: str, rendered: dict[str, Rendered]) -> None:
    settings = yaml.safe_load(
        manifest(rendered[stack], "search", "ConfigMap", "searxng")["data"]["settings.yml"]
    )
    assert "json" in settings["search"]["formats"]
    assert settings["server"]["limiter"] is True and settings["valkey"]["url"].startswith("valkey://")
    secret = manifest(rendered[stack], "search", "Secret", "searxng-secrets")
    assert sorted(secret["stringData"]) == ["secret-key", "valkey-password"]
    passwords = {
        item["name"] for item in rendered[stack].of_type("random:index/randomPassword:RandomPassword")
    }
    assert {f"jan-{stack}-search-searxng-secret-key", f"jan-{stack}-search-valkey-password"} <= passwords
    policy = manifest(rendered[stack], "search", "NetworkPolicy", "searxng")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": AppName.MCP_TOOLS.value
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_sandbox_is_isolated(stack: str, rendered: dict[str, Rendered]) -> None:
    deployment = manifest(rendered[stack], "sandbox", "Deployment", "sandboxfusion")
    pod = _pod(deployment)
    assert pod["automountServiceAccountToken"] is False
    assert all(c["resources"]["limits"] for c in pod["containers"])
    namespace = manifest(rendered[stack], "_cluster", "Namespace", "sandbox")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")
    for policy in manifests(rendered[stack], "sandbox", "NetworkPolicy"):
        spec = policy["spec"]
        assert not spec.get("egress"), policy["metadata"]["name"]  # no policy allows any egress
        for rule in spec.get("ingress", []):
            (peer,) = rule["from"]
            assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "jan"}
            assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mcp-tools"
    deny = manifest(rendered[stack], "sandbox", "NetworkPolicy", "default-deny")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("stack", STACKS)
def test_collector_pipelines_send_traces_to_jaeger_and_metrics_to_prometheus(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    collector = values(rendered[stack], "otel-collector")
    pipelines = collector["config"]["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    for pipeline in ("traces", "metrics"):
        assert pipelines[pipeline]["receivers"] == ["otlp"]
        assert pipelines[pipeline]["processors"][0] == "memory_limiter"
    exporters = collector["config"]["exporters"]
    assert exporters["otlp_grpc/jaeger"]["endpoint"] == "jaeger.observability.svc.cluster.local:4317"
    assert values(rendered[stack], "jaeger")["fullnameOverride"] == "jaeger"
    prometheus = values(rendered[stack], "kube-prometheus-stack")["prometheus"]["prometheusSpec"]
    assert prometheus["enableOTLPReceiver"] is True
    for app in ("llm-api", "response-api", "media-api", "mcp-tools"):
        env = manifest(rendered[stack], "jan", "ConfigMap", app)["data"]
        assert (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc.cluster.local:4318"
        )


def test_grafana_has_datasources_dashboards_and_alert_rules(prod: Rendered) -> None:
    grafana = values(prod, "grafana")
    datasources = {d["uid"]: d for d in grafana["datasources"]["datasources.yaml"]["datasources"]}
    assert set(datasources) == {"prometheus", "jaeger"}
    assert grafana["sidecar"]["dashboards"]["label"] == "grafana_dashboard"
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert values(prod, "kube-prometheus-stack")["grafana"] == {"enabled": False}
    for name in dashboard_names():
        config_map = manifest(prod, "observability", "ConfigMap", f"grafana-dashboard-{name}")
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {"jan-chat", "vllm", "gpu", "kong", "postgres"} <= set(dashboard_names())
    ours = [
        rules
        for rules in manifests(prod, "observability", "PrometheusRule")
        if rules["metadata"]["labels"].get("app.kubernetes.io/part-of") == "jan"
    ]
    alerts = {rule["alert"] for rules in ours for group in rules["spec"]["groups"] for rule in group["rules"]}
    assert len(alerts) >= 5
    assert any("GPU" in alert or "Gpu" in alert for alert in alerts)
    monitor = manifest(prod, "inference", "ServiceMonitor", "model-servers")
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm"}
    dcgm = values(prod, "dcgm-exporter")
    assert dcgm["tolerations"][0]["key"] == "nvidia.com/gpu" and dcgm["serviceMonitor"]["enabled"] is True


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_owned_namespace_is_default_denied_with_psa_labels(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    for namespace in OWNED_NAMESPACES:
        deny = manifest(rendered[stack], namespace, "NetworkPolicy", "default-deny")
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        labels = manifest(rendered[stack], "_cluster", "Namespace", namespace)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] in ("restricted", "baseline")
    apps = manifest(rendered[stack], "_cluster", "Namespace", "jan")["metadata"]["labels"]
    assert apps["pod-security.kubernetes.io/enforce"] == "restricted"


def test_allows_follow_the_data_flows(rendered: dict[str, Rendered]) -> None:
    prod, dev = rendered["prod"], rendered["dev"]
    kong_to_llm = manifest(prod, "jan", "NetworkPolicy", "allow-kong-to-llm-api-ingress")
    peer = kong_to_llm["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "gateway"}
    assert kong_to_llm["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "llm-api"}
    tools = manifest(prod, "jan", "NetworkPolicy", "allow-mcp-tools-to-searxng-egress")
    assert tools["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]
    # Prod's Postgres is RDS inside the VPC; dev's is CloudNativePG in the data namespace.
    rds = manifest(prod, "jan", "NetworkPolicy", "allow-llm-api-to-postgres-egress")
    assert rds["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.10.0.0/16"}}]
    cnpg = manifest(dev, "jan", "NetworkPolicy", "allow-llm-api-to-postgres-egress")
    assert cnpg["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "data"
    }
    bootstrap = manifest(prod, "jan", "NetworkPolicy", "allow-db-bootstrap-to-postgres-egress")
    assert bootstrap["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "database"}
    # On S3 stacks media-api fetches its credentials from the node's Pod Identity agent.
    agent = manifest(prod, "jan", "NetworkPolicy", "allow-media-api-to-pod-identity-egress")
    assert agent["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "169.254.170.23/32"}}]
    assert not has_manifest(dev, "jan", "NetworkPolicy", "allow-media-api-to-pod-identity-egress")
    # The sandbox namespace gets no DNS: code it runs resolves nothing.
    assert not has_manifest(prod, "sandbox", "NetworkPolicy", "allow-dns")
    for namespace in ("jan", "gateway", "search"):
        assert has_manifest(prod, namespace, "NetworkPolicy", "allow-dns")


def _images(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            elif key == "image" and isinstance(value, dict) and "repository" in value:
                found.append(f"{value['repository']}:{value.get('tag', '')}")
            else:
                found += _images(value)
        return found
    if isinstance(node, list):
        return [image for item in node for image in _images(item)]
    return []


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("stack", STACKS)
def test_nothing_in_the_render_floats(stack: str, rendered: dict[str, Rendered]) -> None:
    images = []
    for path in (rendered[stack].out / "manifests").rglob("*.yaml"):
        images += _images(yaml.safe_load(path.read_text()))
    for item in rendered[stack].of_type(RELEASE):
        images += _images(item["inputs"].get("values") or {})
        if item["inputs"].get("repositoryOpts"):
            pinned = {(pin.chart, pin.version, pin.repository) for pin in CHARTS.values()}
            inputs = item["inputs"]
            assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"]) in pinned
    assert len(images) >= 8
    for item in rendered[stack].resources:  # nor in any other value (env, args, annotations)
        if item["type"].endswith(":CustomResourceDefinition"):
            continue  # schema documentation, not a deployed value
        assert not any(text.endswith(":latest") for text in _strings(item["inputs"])), item["name"]
    for image in images:
        repository, _, tag = image.rpartition(":")
        assert repository and "@" not in tag, image
        assert EXACT_TAG.fullmatch(tag), f"{image} is not pinned to an exact tag"


def test_a_cpu_stack_may_use_an_external_upstream_instead(tmp_path: Path) -> None:
    document = yaml.safe_load(stack_file("dev").read_text())
    upstream = {"baseUrl": "https://api.example.com/v1", "apiKeySecret": "upstream-key"}
    document["config"]["jan-server:inference"]["externalUpstream"] = upstream
    path = tmp_path / "Pulumi.dev-upstream.yaml"
    path.write_text(yaml.safe_dump(document))
    rendered = render_stack(str(path), tmp_path / "out")
    assert rendered.exit_code == 0
    providers = manifest(rendered, "jan", "ConfigMap", "llm-api-files")["data"]["providers.yml"]
    (entry,) = yaml.safe_load(providers)["providers"]
    assert entry["base_url"] == "https://api.example.com/v1" and entry["api_key"] == "${MODEL_SERVER_API_KEY}"
    # llm-api reads that key from the stack's Secret, not from one the platform generates.
    (container,) = manifest(rendered, "jan", "Deployment", "llm-api")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["MODEL_SERVER_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "upstream-key",
        "key": "api-key",
    }
    assert not has_manifest(rendered, "inference", "Deployment", "*")
    assert not has_manifest(rendered, "inference", "Secret", "*")
    egress = manifest(rendered, "jan", "NetworkPolicy", "allow-llm-api-to-upstreams-egress")
    assert egress["spec"]["egress"][0]["ports"] == [{"protocol": "TCP", "port": 443}]


def test_a_gated_model_gets_the_hf_token_and_one_replica_keeps_its_weights_on_a_volume(
    tmp_path: Path,
) -> None:
    document = yaml.safe_load(stack_file("staging").read_text())
    document["config"]["jan-server:inference"]["hfTokenSecret"] = "hf-token"
    path = tmp_path / "Pulumi.staging-gated.yaml"
    path.write_text(yaml.safe_dump(document))
    rendered = render_stack(str(path), tmp_path / "out")
    assert rendered.exit_code == 0
    (container,) = _pod(manifest(rendered, "inference", "Deployment", "vllm-qwen3-8b"))["containers"]
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    claim = manifest(rendered, "inference", "PersistentVolumeClaim", "vllm-qwen3-8b-weights")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not has_manifest(rendered, "inference", "ScaledObject", "vllm-qwen3-8b")
