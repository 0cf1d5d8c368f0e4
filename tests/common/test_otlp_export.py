"""Traces and metrics leave the app over OTLP/HTTP when an endpoint is configured."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apps.common.service import service_app
from apps.common.settings import ServiceSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT


class FakeCollector:
    """Accepts OTLP/HTTP protobuf exports the way the OpenTelemetry Collector does."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []
        self.metrics: list[tuple[str, str]] = []
        self.app = FastAPI()
        self.app.add_api_route("/v1/traces", self.traces, methods=["POST"])
        self.app.add_api_route("/v1/metrics", self.metric_export, methods=["POST"])

    async def traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in message.resource_spans:
            service = _service_name(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                self.spans.extend((service, span.name) for span in scope.spans)
        return Response(b"", media_type="application/x-protobuf")

    async def metric_export(self, request: Request) -> Response:
        message = ExportMetricsServiceRequest.FromString(await request.body())
        for resource_metrics in message.resource_metrics:
            service = _service_name(resource_metrics.resource.attributes)
            for scope in resource_metrics.scope_metrics:
                self.metrics.extend((service, metric.name) for metric in scope.metrics)
        return Response(b"", media_type="application/x-protobuf")


def _service_name(attributes: object) -> str:
    for attribute in attributes:  # type: ignore[attr-defined]
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


def test_spans_and_metrics_reach_the_collector(issuer: TestIssuer) -> None:
    collector = FakeCollector()
    with serve(collector.app) as collector_server:
        settings = ServiceSettings(
            service_name="otlp-test",
            auth=issuer.auth_settings(),
            otel_exporter_otlp_endpoint=collector_server.url,
        )
        app = service_app(settings, title="otlp")

        @app.get("/hello")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

        with serve(app) as server:
            for _ in range(3):
                assert httpx.get(f"{server.url}/hello", timeout=CLIENT_TIMEOUT).status_code == 200
        # Stopping the app flushed both providers.
        assert ("otlp-test", "GET /hello") in collector.spans
        assert any(
            service == "otlp-test" and name.startswith("http.server") for service, name in collector.metrics
        )
