"""The platform's alert rules as a `PrometheusRule` (kube-prometheus-stack picks it up).

Every rule has `for` (no paging on a single bad scrape), a `severity` label (`critical` pages,
`warning` tickets) and a `summary` annotation; thresholds come from `AlertThresholds`. Queries use only
metrics listed in `infra.specs.otel.METRICS_BY_SOURCE`. Decisions:
- One `PrometheusRule` per metric source (`jan-<source>`, `RULE_SOURCES`), shipped by the component
  that runs the source (`infra.specs.monitoring`): a stack without vLLM or GPUs has no vLLM or GPU
  alerts that could never evaluate.
- The latency rule covers non-streaming routes only: a streamed chat completion or response lasts as
  long as the generation, so its duration says nothing about the service; time to first token (from
  vLLM) is the streaming path's latency signal.
- Postgres connections: one rule over CloudNativePG's metrics or the Postgres exporter's, whichever
  the stack has (`infra.specs.postgres_metrics`).
- GPU memory alerts only near full (97% by default): vLLM preallocates most of the GPU memory for its
  KV cache on purpose.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.specs.postgres_metrics import connections_ratio


class AlertThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    error_ratio: float = Field(0.05, gt=0, lt=1)
    p95_latency_ms: float = Field(2000, gt=0)  # non-streaming routes
    p95_ttft_seconds: float = Field(5, gt=0)
    queue_depth: int = Field(10, ge=1)
    gpu_memory_ratio: float = Field(0.97, gt=0, le=1)  # vLLM preallocates ~90% on purpose
    db_connection_ratio: float = Field(0.8, gt=0, le=1)


def _rule(name: str, expr: str, wait: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": wait,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def alert_rules(namespace: str, source: str, thresholds: AlertThresholds | None = None) -> dict[str, Any]:
    """The alerts on one metric source's metrics as a PrometheusRule manifest (`jan-<source>`)."""
    rules = _rules(thresholds or AlertThresholds())[source]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": f"jan-{source}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "jan"},
        },
        "spec": {"groups": [{"name": f"jan-{source}", "interval": "30s", "rules": rules}]},
    }


def _rules(t: AlertThresholds) -> dict[str, list[dict[str, Any]]]:
    app_requests = 'http_server_duration_milliseconds_count{job=~"jan/.+"'
    streaming = '"/v1/chat/completions|/v1/responses.*"'
    return {
        "kong": [
            _rule(
                "JanGateway5xxRate",
                'sum(rate(kong_http_requests_total{code=~"5.."}[5m]))'
                f" / sum(rate(kong_http_requests_total[5m])) > {t.error_ratio}",
                "10m",
                "critical",
                "More than {{ $value | humanizePercentage }} of requests through Kong fail with 5xx.",
            ),
        ],
        "apps": [
            _rule(
                "JanApp5xxRate",
                f'sum by (job) (rate({app_requests},http_status_code=~"5.."}}[5m]))'
                f" / sum by (job) (rate({app_requests}}}[5m])) > {t.error_ratio}",
                "10m",
                "critical",
                "{{ $labels.job }} answers {{ $value | humanizePercentage }} of requests with 5xx.",
            ),
            _rule(
                "JanAppP95Latency",
                "histogram_quantile(0.95, sum by (le, job) (rate(http_server_duration_milliseconds_bucket"
                f'{{job=~"jan/.+",http_target!~{streaming}}}[5m]))) > {t.p95_latency_ms:g}',
                "15m",
                "warning",
                "p95 latency of {{ $labels.job }} (non-streaming routes) is {{ $value }} ms.",
            ),
        ],
        "vllm": [
            _rule(
                "VLLMTimeToFirstTokenP95",
                "histogram_quantile(0.95, sum by (le, model_name)"
                f" (rate(vllm:time_to_first_token_seconds_bucket[5m]))) > {t.p95_ttft_seconds:g}",
                "10m",
                "warning",
                "p95 time to first token of {{ $labels.model_name }} is {{ $value }} s.",
            ),
            _rule(
                "VLLMQueueDepth",
                f"max by (model_name) (vllm:num_requests_waiting) > {t.queue_depth}",
                "5m",
                "warning",
                "{{ $value }} requests are waiting for {{ $labels.model_name }}: add replicas or GPUs.",
            ),
        ],
        "dcgm": [
            _rule(
                "GPUMemoryNearlyFull",
                "max by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE))"
                f" > {t.gpu_memory_ratio}",
                "15m",
                "warning",
                "GPU {{ $labels.gpu }} on {{ $labels.Hostname }}: {{ $value | humanizePercentage }}"
                " memory used.",
            ),
        ],
        "postgres": [
            _rule(
                "PostgresConnectionsNearLimit",
                f"({connections_ratio('job, pod')}) > {t.db_connection_ratio}",
                "10m",
                "warning",
                "Postgres ({{ $labels.job }} {{ $labels.pod }}) uses {{ $value | humanizePercentage }}"
                " of max_connections.",
            ),
        ],
    }


# The sources that have alert rules (keys of `infra.specs.otel.METRICS_BY_SOURCE`, Postgres as one).
RULE_SOURCES = tuple(_rules(AlertThresholds()))
