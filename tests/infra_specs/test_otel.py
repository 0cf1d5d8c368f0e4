"""Collector pipelines, Grafana provisioning, dashboards and alert rules."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import yaml

from infra.specs.alerts import RULE_SOURCES, AlertThresholds, alert_rules
from infra.specs.monitoring import DASHBOARDS_BY_SOURCE, monitoring_manifests
from infra.specs.otel import (
    DASHBOARD_DIR,
    JAEGER_UID,
    KNOWN_METRICS,
    METRICS_BY_SOURCE,
    PROMETHEUS_UID,
    ObservabilityInputs,
    app_otel_env,
    collector_chart_values,
    collector_config,
    dashboard,
    dashboard_configmaps,
    dashboard_names,
    grafana_datasources,
    kong_traces_endpoint,
    prometheus_values,
    promql_metric_names,
)
from infra.versions import IMAGES

INPUTS = ObservabilityInputs()


def _targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in board["panels"] for target in panel["targets"]]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, job) (rate(x_bucket{a="b{c}",d=~"5.."}[5m]))) / on(job) y > 3'
    )
    assert promql_metric_names(expr) == {"x_bucket", "y"}
    assert promql_metric_names("max by (m) (vllm:num_requests_waiting) > 10") == {"vllm:num_requests_waiting"}


def test_collector_pipelines() -> None:
    config = collector_config(INPUTS)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    for pipeline in pipelines.values():
        assert pipeline["processors"] == ["memory_limiter", "batch"]
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind])
    assert not {"logging", "debug"} & {name.split("/")[0] for name in config["exporters"]}
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == INPUTS.jaeger_otlp_endpoint
    assert config["exporters"]["otlp_http/prometheus"]["endpoint"].endswith(":9090/api/v1/otlp")
    assert yaml.safe_load(yaml.safe_dump(config)) == config


def test_collector_chart_values_pin_the_image_and_drop_chart_defaults() -> None:
    values = collector_chart_values(INPUTS)
    assert values["mode"] == "deployment"
    assert f"{values['image']['repository']}:{values['image']['tag']}" == IMAGES["otel-collector"].ref
    config = values["config"]
    assert config["exporters"]["debug"] is None and config["service"]["pipelines"]["logs"] is None
    assert all(config["receivers"][name] is None for name in ("jaeger", "zipkin", "prometheus"))
    assert (
        config["service"]["pipelines"]["traces"] == collector_config(INPUTS)["service"]["pipelines"]["traces"]
    )
    assert values["fullnameOverride"] == INPUTS.collector_service
    assert collector_config(INPUTS)["exporters"].keys() == {"otlp_grpc/jaeger", "otlp_http/prometheus"}


def test_apps_and_kong_send_to_the_collector() -> None:
    endpoint = app_otel_env(INPUTS)["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector.observability.svc.cluster.local:4318"
    assert kong_traces_endpoint(INPUTS) == endpoint + "/v1/traces"


def test_prometheus_accepts_otlp_and_finds_our_monitors() -> None:
    spec = prometheus_values()["prometheus"]["prometheusSpec"]
    assert spec["enableOTLPReceiver"] is True
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert spec["ruleSelectorNilUsesHelmValues"] is False


def test_datasources_cover_every_dashboard_datasource() -> None:
    sources = grafana_datasources(INPUTS)["datasources"]
    assert {(source["uid"], source["type"]) for source in sources} == {
        (PROMETHEUS_UID, "prometheus"),
        (JAEGER_UID, "jaeger"),
    }
    assert [source["uid"] for source in sources if source["isDefault"]] == [PROMETHEUS_UID]
    uids = {source["uid"] for source in sources}
    for name in dashboard_names():
        for panel in dashboard(name)["panels"]:
            assert panel["datasource"]["uid"] in uids


def test_dashboards_are_valid_and_query_known_metrics() -> None:
    assert set(dashboard_names()) == {"jan-chat", "vllm", "gpu", "kong", "postgres"}
    seen_uids = set()
    used: set[str] = set()
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] not in seen_uids
        seen_uids.add(board["uid"])
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)) and board["panels"]
        for target in _targets(board):
            names = promql_metric_names(target["expr"])
            assert names, target["expr"]
            assert names <= KNOWN_METRICS, (path.name, names - KNOWN_METRICS)
            used |= names
    for source, metrics in METRICS_BY_SOURCE.items():
        assert used & metrics, f"no dashboard shows {source}"


def _exprs_by_title(name: str) -> dict[str, str]:
    board = dashboard(name)
    return {panel["title"]: " ".join(t["expr"] for t in panel["targets"]) for panel in board["panels"]}


def test_chat_dashboard_has_the_chat_path_panels() -> None:
    by_title = _exprs_by_title("jan-chat")
    assert 'http_target="/v1/chat/completions"' in by_title["Chat completion latency (whole response)"]
    failures = by_title["Model failures answered by llm-api (502/504)"]
    assert 'job="jan/llm-api"' in failures and 'http_status_code=~"502|504"' in failures
    # The chat path as the apps serve it: only the apps' metrics, so it shows data on every stack.
    for expr in by_title.values():
        assert promql_metric_names(expr) <= METRICS_BY_SOURCE["apps"], expr


def test_per_model_panels_are_on_the_vllm_dashboard() -> None:
    by_title = _exprs_by_title("vllm")
    assert any("vllm:time_to_first_token_seconds_bucket" in expr for expr in by_title.values())
    assert any("vllm:generation_tokens_total" in expr for expr in by_title.values())
    assert 'status="5xx"' in by_title["Model server 5xx by Service"]


def test_each_dashboard_and_rule_watches_one_source_and_queries_only_its_metrics() -> None:
    owned = [name for names in DASHBOARDS_BY_SOURCE.values() for name in names]
    assert sorted(owned) == dashboard_names(), "every dashboard belongs to exactly one source"
    assert set(RULE_SOURCES) <= set(DASHBOARDS_BY_SOURCE)
    postgres = METRICS_BY_SOURCE["cnpg"] | METRICS_BY_SOURCE["postgres-exporter"]
    for source in DASHBOARDS_BY_SOURCE:
        exported = postgres if source == "postgres" else METRICS_BY_SOURCE[source]
        for body in monitoring_manifests(source, "observability"):
            if body["kind"] == "PrometheusRule":
                assert body["metadata"]["name"] == f"jan-{source}"
                exprs = [rule["expr"] for group in body["spec"]["groups"] for rule in group["rules"]]
            else:
                [text] = body["data"].values()
                exprs = _targets_exprs(json.loads(text))
            for expr in exprs:
                assert promql_metric_names(expr) <= exported, (source, expr)


def _targets_exprs(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for target in _targets(board)]


def test_dashboard_configmaps_carry_the_sidecar_label() -> None:
    maps = dashboard_configmaps("observability", dashboard_names())
    assert len(maps) == len(dashboard_names())
    for config_map in maps:
        kubernetes_validate.validate(config_map, "1.31.0", strict=True)
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(key, text)] = config_map["data"].items()
        assert json.loads(text) == dashboard(key.removesuffix(".json"))


def test_alert_rules() -> None:
    thresholds = AlertThresholds(queue_depth=7)
    manifests = [alert_rules("observability", source, thresholds) for source in RULE_SOURCES]
    for manifest in manifests:
        assert (manifest["apiVersion"], manifest["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    groups = [group for manifest in manifests for group in manifest["spec"]["groups"]]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert promql_metric_names(rule["expr"]) <= KNOWN_METRICS, rule["alert"]
    exprs = {rule["alert"]: rule["expr"] for rule in rules}
    assert "kong_http_requests_total" in exprs["JanGateway5xxRate"]
    assert "histogram_quantile(0.95" in exprs["JanAppP95Latency"]
    assert exprs["VLLMQueueDepth"].endswith("vllm:num_requests_waiting) > 7")
    assert "DCGM_FI_DEV_FB_USED" in exprs["GPUMemoryNearlyFull"]
    assert "max_connections" in exprs["PostgresConnectionsNearLimit"]
    assert len(exprs) == len(rules)
