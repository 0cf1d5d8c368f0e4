"""The apps' metric names, as Prometheus stores them, are the ones the dashboards and alerts query.

The apps' real telemetry (`apps.common.telemetry`, FastAPI and httpx instrumentations) runs against a
FastAPI app and an in-memory reader; each OTLP metric is named as Prometheus 3's OTLP receiver names
it by default (`UnderscoreEscapingWithSuffixes`, the translation the collector's `otlp_http` push to
`/api/v1/otlp` meets, see `infra.specs.otel`): dots and other invalid characters become `_`, the
unit is appended as a word (`ms` → `milliseconds`, `By` → `bytes`; `{request}` annotations drop),
monotonic sums get `_total`, histograms are stored as `_bucket`, `_count` and `_sum`.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI, HTTPException
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    InMemoryMetricReader,
    Metric,
    Sum,
)

from apps.common.telemetry import setup_telemetry
from infra.specs.otel import METRICS_BY_SOURCE

CUMULATIVE = AggregationTemporality.CUMULATIVE
_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "By": "bytes", "KiBy": "kibibytes", "1": "ratio"}


def prometheus_names(metric: Metric) -> set[str]:
    """What Prometheus' OTLP receiver stores for `metric` (UnderscoreEscapingWithSuffixes)."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_:]", "_", metric.name)).strip("_")
    unit = re.sub(r"\{[^}]*\}", "", metric.unit or "")
    monotonic = isinstance(metric.data, Sum) and metric.data.is_monotonic
    if unit == "1" and not isinstance(metric.data, (Sum, Histogram)):
        word = "ratio"
    elif unit and unit != "1":
        word = "_per_".join(_UNIT_WORDS.get(part, part) for part in unit.split("/"))
    else:
        word = ""
    if word and not name.endswith(word):
        name = f"{name}_{word}"
    if isinstance(metric.data, Histogram):
        return {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return {f"{name}_total" if monotonic else name}


def test_the_translation_follows_prometheus_examples() -> None:
    # The examples of Prometheus' otlptranslator: a histogram in seconds, a byte counter.
    duration = Metric("http.server.request.duration", "", "s", Histogram([], CUMULATIVE))
    assert "http_server_request_duration_seconds_bucket" in prometheus_names(duration)
    assert prometheus_names(Metric("system.io", "", "By", Sum([], CUMULATIVE, is_monotonic=True))) == {
        "system_io_bytes_total"
    }


async def test_the_apps_export_every_metric_the_dashboards_query_as_apps() -> None:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/v1/failing")
    async def failing() -> None:
        raise HTTPException(502, "the model failed")

    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        app, service_name="llm-api", version="0", environment="test", otlp_endpoint=None, metric_reader=reader
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            await client.post("/v1/chat/completions", json={})
            # An instrumented client (as the apps use for calls between them) adds the client metrics.
            outgoing = telemetry.instrument_httpx(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
            )
            async with outgoing:
                assert (await outgoing.get("/v1/failing")).status_code == 502
        data = reader.get_metrics_data()
    finally:
        telemetry.shutdown()
    assert data is not None
    points: dict[str, list[dict[str, object]]] = {}
    exported: set[str] = set()
    for resource in data.resource_metrics:
        # Prometheus' `job` is `<service.namespace>/<service.name>`: the queries' `jan/llm-api`.
        attributes = resource.resource.attributes
        assert (attributes["service.namespace"], attributes["service.name"]) == ("jan", "llm-api")
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                names = prometheus_names(metric)
                exported |= names
                for name in names:
                    points[name] = [dict(point.attributes or {}) for point in metric.data.data_points]
    missing = METRICS_BY_SOURCE["apps"] - exported
    assert not missing, f"the apps export no {sorted(missing)}; they export {sorted(exported)}"
    # The labels the queries filter on: the route template and the status (dots become underscores).
    server = points["http_server_duration_milliseconds_count"]
    assert {"http.target": "/v1/chat/completions", "http.status_code": 200}.items() <= server[0].items()
