"""Observability specs: the OpenTelemetry Collector config, Grafana provisioning, dashboards and alerts.

Data flow: every app (and Kong's `opentelemetry` plugin) sends OTLP/HTTP to the collector
(`OTEL_EXPORTER_OTLP_ENDPOINT=http://<collector>:4318`, see `app_otel_env`); the collector sends traces
to Jaeger v2 over OTLP/gRPC and metrics to Prometheus. vLLM, the DCGM exporter, Kong's `prometheus`
plugin and CloudNativePG expose Prometheus endpoints that kube-prometheus-stack scrapes directly
(ServiceMonitors/PodMonitors); they do not go through the collector. Decisions:

- Metrics reach Prometheus by **OTLP push** (`otlp_http` exporter → Prometheus 3's native receiver at
  `/api/v1/otlp`, switched on in kube-prometheus-stack with `prometheusSpec.enableOTLPReceiver`), not
  through the collector's `prometheus` exporter. A scraped exporter would need `honorLabels` and breaks
  when several collector replicas expose the same series (each holds part of the cumulative state); with
  push, any replica can forward any app's data, the collector keeps no metric state, and no extra
  scrape interval is added. `prometheusremotewrite` would work as well but needs the remote-write
  receiver and a second naming translation; OTLP is the native path in Prometheus 3.
- Prometheus names OTLP metrics with unit and type suffixes (`http.server.duration` in ms →
  `http_server_duration_milliseconds_bucket`), dots become underscores in labels (`http_status_code`),
  and `job` is `<service.namespace>/<service.name>` (`jan/llm-api`): the dashboards and rules below
  use exactly those names (`METRICS_BY_SOURCE` lists them and a test holds every query to the list).
- The apps' metrics are the OpenTelemetry FastAPI/httpx instrumentations' (old HTTP semantic
  conventions, the instrumentations' default): `http.server.duration` (ms, by `http.target` = route
  template, `http.method`, `http.status_code`), `http.server.active_requests`,
  `http.server.response.size`, `http.client.duration`. The apps export no per-model metric, so the
  per-model panels (time to first token, tokens/s, errors) read vLLM's own metrics, whose Services are
  one per model (`job` = the vLLM Service name, `model_name` label).
- Exporters use the collector's component names since v0.144 (`otlp_grpc`, `otlp_http`); the old
  `otlp`/`otlphttp` are deprecated aliases that log a warning at every start.
- `memory_limiter` comes first in every pipeline, then `batch` (the collector's documented order); the
  removed `logging` exporter is not used (nor `debug`, which would only add noise in a cluster).
- Alerts live in `infra.specs.alerts` and use the same metric list; `infra.specs.monitoring` says
  which dashboards and rules watch which source, so each ships with the component that runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.specs.postgres_metrics import CNPG_METRICS, EXPORTER_METRICS
from infra.versions import IMAGES

DASHBOARD_DIR = Path(__file__).parent / "dashboards"
PROMETHEUS_UID = "prometheus"
JAEGER_UID = "jaeger"
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318

# Every metric a dashboard or alert may query, by the source that exports it.
METRICS_BY_SOURCE: dict[str, frozenset[str]] = {
    # OTel FastAPI/httpx instrumentation of the four apps, through the collector (OTLP → Prometheus).
    "apps": frozenset(
        {
            "http_server_duration_milliseconds_bucket",
            "http_server_duration_milliseconds_count",
            "http_server_duration_milliseconds_sum",
            "http_server_active_requests",
            "http_server_response_size_bytes_sum",
            "http_client_duration_milliseconds_bucket",
            "http_client_duration_milliseconds_count",
        }
    ),
    # vLLM's OpenAI server, /metrics (V1 engine names).
    "vllm": frozenset(
        {
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:kv_cache_usage_perc",
            "vllm:time_to_first_token_seconds_bucket",
            "vllm:e2e_request_latency_seconds_bucket",
            "vllm:inter_token_latency_seconds_bucket",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
            "vllm:request_success_total",
            "http_requests_total",  # vLLM's HTTP layer (prometheus-fastapi-instrumentator), status "5xx"
        }
    ),
    # NVIDIA DCGM exporter.
    "dcgm": frozenset(
        {
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
        }
    ),
    # Kong's bundled `prometheus` plugin (Kong 3.x).
    "kong": frozenset(
        {
            "kong_http_requests_total",
            "kong_request_latency_ms_bucket",
            "kong_upstream_latency_ms_bucket",
            "kong_kong_latency_ms_bucket",
            "kong_bandwidth_bytes",
            "kong_nginx_connections_total",
            "kong_upstream_target_health",
        }
    ),
    # Postgres: CloudNativePG's own exporter, or prometheus-postgres-exporter (RDS).
    "cnpg": CNPG_METRICS,
    "postgres-exporter": EXPORTER_METRICS,
}
KNOWN_METRICS: frozenset[str] = frozenset().union(*METRICS_BY_SOURCE.values())
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, label matchers, ranges, groupings and
    function names removed), so queries can be held to `KNOWN_METRICS`."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in _PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


class ObservabilityInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "observability"
    collector_service: str = "otel-collector"
    # Jaeger v2's OTLP/gRPC receiver (host:port) and UI/query base URL.
    jaeger_otlp_endpoint: str = "jaeger.observability.svc.cluster.local:4317"
    jaeger_query_url: str = "http://jaeger.observability.svc.cluster.local:16686"
    # Prometheus' base URL (kube-prometheus-stack's `<release>-prometheus` Service).
    prometheus_url: str = "http://kube-prometheus-stack-prometheus.observability.svc.cluster.local:9090"
    memory_limit_percentage: int = Field(80, ge=10, le=95)
    memory_spike_percentage: int = Field(20, ge=5, le=50)
    batch_timeout: str = "5s"


def collector_endpoint(inputs: ObservabilityInputs) -> str:
    return f"http://{inputs.collector_service}.{inputs.namespace}.svc.cluster.local:{OTLP_HTTP_PORT}"


def app_otel_env(inputs: ObservabilityInputs) -> dict[str, str]:
    """What every app gets: its SDK exports OTLP/HTTP to `<endpoint>/v1/{traces,metrics}`."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector_endpoint(inputs)}


def kong_traces_endpoint(inputs: ObservabilityInputs) -> str:
    return f"{collector_endpoint(inputs)}/v1/traces"


def collector_config(inputs: ObservabilityInputs) -> dict[str, Any]:
    """The collector's `config:` (opentelemetry-collector-contrib)."""
    processors = ["memory_limiter", "batch"]
    return {
        "extensions": {"health_check": {"endpoint": "0.0.0.0:13133"}},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                    "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"},
                }
            }
        },
        "processors": {
            "memory_limiter": {
                "check_interval": "1s",
                "limit_percentage": inputs.memory_limit_percentage,
                "spike_limit_percentage": inputs.memory_spike_percentage,
            },
            "batch": {"timeout": inputs.batch_timeout, "send_batch_size": 1024},
        },
        "exporters": {
            "otlp_grpc/jaeger": {"endpoint": inputs.jaeger_otlp_endpoint, "tls": {"insecure": True}},
            # otlp_http appends /v1/metrics: Prometheus serves OTLP at /api/v1/otlp/v1/metrics.
            "otlp_http/prometheus": {
                "endpoint": f"{inputs.prometheus_url}/api/v1/otlp",
                "tls": {"insecure": True},
            },
        },
        "service": {
            "extensions": ["health_check"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": processors,
                    "exporters": ["otlp_grpc/jaeger"],
                },
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": processors,
                    "exporters": ["otlp_http/prometheus"],
                },
            },
        },
    }


# Components the opentelemetry-collector chart puts in its default config; Helm merges values into
# it, so each is removed with a null (and its Service port switched off).
_CHART_DEFAULT_RECEIVERS = ("jaeger", "zipkin", "prometheus")
_CHART_DEFAULT_PORTS = ("jaeger-compact", "jaeger-thrift", "jaeger-grpc", "zipkin")


def collector_chart_values(inputs: ObservabilityInputs, *, replicas: int = 2) -> dict[str, Any]:
    """Values for the `opentelemetry-collector` chart (which has no default mode or image)."""
    config: dict[str, Any] = collector_config(inputs)
    config["receivers"] |= dict.fromkeys(_CHART_DEFAULT_RECEIVERS)
    config["exporters"] |= {"debug": None}
    config["service"]["pipelines"] |= {"logs": None}
    image = IMAGES["otel-collector"]
    return {
        "mode": "deployment",
        "replicaCount": replicas,
        "image": {"repository": image.repository, "tag": image.tag},
        "command": {"name": "otelcol-contrib"},
        "fullnameOverride": inputs.collector_service,
        # memory_limiter's percentages are of this limit.
        "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "ports": {
            **{name: {"enabled": False} for name in _CHART_DEFAULT_PORTS},
            # The chart probes the health_check extension on 13133 without declaring the port.
            "health": {"enabled": True, "containerPort": 13133, "servicePort": 13133, "protocol": "TCP"},
        },
        "config": config,
    }


def prometheus_values() -> dict[str, Any]:
    """The kube-prometheus-stack values the collector, the monitors and the rules rely on."""
    return {
        "prometheus": {
            "prometheusSpec": {
                "enableOTLPReceiver": True,
                # The apps' resource attributes as labels next to `job`/`instance`.
                "otlp": {"promoteResourceAttributes": ["service.version", "deployment.environment"]},
                # Two collector replicas may deliver the same series slightly out of order.
                "tsdb": {"outOfOrderTimeWindow": "5m"},
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        "grafana": {
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1"}},
        },
    }


def grafana_datasources(inputs: ObservabilityInputs) -> dict[str, Any]:
    """Grafana's datasource provisioning file: Prometheus (default) and Jaeger, with fixed uids."""
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": PROMETHEUS_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": inputs.prometheus_url,
                "isDefault": True,
                "jsonData": {"timeInterval": "30s"},
            },
            {
                "name": "Jaeger",
                "uid": JAEGER_UID,
                "type": "jaeger",
                "access": "proxy",
                "url": inputs.jaeger_query_url,
                "isDefault": False,
            },
        ],
    }


@cache
def _dashboard_text(name: str) -> str:
    return (DASHBOARD_DIR / f"{name}.json").read_text(encoding="utf-8")


def dashboard_names() -> list[str]:
    return sorted(path.stem for path in DASHBOARD_DIR.glob("*.json"))


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_dashboard_text(name))
    return loaded


def dashboard_configmaps(namespace: str, names: Iterable[str]) -> list[dict[str, Any]]:
    """One ConfigMap per named dashboard, labelled for Grafana's dashboard sidecar."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"grafana-dashboard-{name}",
                "namespace": namespace,
                "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "jan"},
                "annotations": {"grafana_folder": "Jan"},
            },
            "data": {f"{name}.json": _dashboard_text(name)},
        }
        for name in names
    ]
