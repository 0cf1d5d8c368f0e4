"""OpenTelemetry traces and metrics for one app.

Each app gets its own tracer and meter providers (resource `service.name` = the app), so four apps in
one local process still report as four services. Spans and metrics are exported over OTLP/HTTP only
when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; tests pass their own in-memory exporter instead.
The ASGI instrumentation is told not to open a span per `send`/`receive` message, which would add a
span per streamed chunk.

Database spans come from the SQLAlchemy instrumentation's `EngineTracer`, attached to each app's
engine with that app's providers (its pool metrics only when a metric reader exists). Not through
`SQLAlchemyInstrumentor().instrument()`: that instrumentor is a process-wide singleton, so a second
call is a no-op, and its first call patches `create_engine` and `Engine.connect` for every engine
made afterwards with the first caller's providers. In local mode (four apps, one process) the other
apps' statements were then reported as the first app's, and every session's checkout opened a
`connect` span of its own.

The FastAPI instrumentation names each server span (and sets `http.route`) by matching the request
against every route of the app, before Starlette's own routing does the same again: about 3% of
llm-api's CPU on a plain chat completion (bench/chat_cpu.py). `RouteNames` remembers that answer for
paths that are routes of their own (`/v1/chat/completions`), so the hot paths match once; paths with
parameters (`/v1/conversations/{id}`) are still matched every time, so the cache stays bounded.

When nothing is exported (no span processor, no metric reader: no OTLP endpoint and no test exporter),
a request skips the instrumentation altogether (`TelemetrySwitch`): its attributes, span and metrics
were ~10% of llm-api's CPU on a plain chat completion, for data nobody could read. The trace context
still passes on: the request runs under a non-recording span that continues the caller's trace (or
starts one), so the `traceparent` injected into calls to the model and other apps is as before. A
span processor added later (`tracer_provider.add_span_processor`) turns the instrumentation on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_getter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_instrumentation_version
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.semconv.metrics import MetricInstruments
from opentelemetry.trace import Tracer
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

SpanDetails = Callable[[Any], tuple[str, dict[str, Any]]]  # takes an ASGI scope


@dataclass
class Telemetry:
    """The providers of one app; `shutdown` flushes them."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    tracer: Tracer
    meter: Meter
    metrics_exported: bool = True  # a metric reader exists (the SDK takes readers only when created)

    def instrument_httpx(self, client: httpx.AsyncClient) -> httpx.AsyncClient:
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )
        return client

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """A span per statement and the connection-usage metric of `engine`, in this app's name."""
        scope = "opentelemetry.instrumentation.sqlalchemy"
        tracer = self.tracer_provider.get_tracer(scope, sqlalchemy_instrumentation_version)
        usage = self.meter_provider.get_meter(
            scope, sqlalchemy_instrumentation_version
        ).create_up_down_counter(
            name=MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE,
            unit="connections",
            description="Connections of the pool in the state the `state` attribute names.",
        )
        # The listeners live as long as the engine (the tracer holds them by weak references).
        kind = EngineTracer if self.metrics_exported else _StatementTracer
        kind(tracer, engine.sync_engine, usage, enable_commenter=False)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    app: FastAPI,
    *,
    service_name: str,
    version: str,
    environment: str,
    otlp_endpoint: str | None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "jan",
            "service.version": version,
            "deployment.environment": environment,
        }
    )
    tracer_provider = _SwitchingTracerProvider(resource=resource)
    readers: list[MetricReader] = []
    if otlp_endpoint:
        base = otlp_endpoint.rstrip("/")
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces")))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(f"{base}/v1/metrics")))
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if metric_reader is not None:
        readers.append(metric_reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    tracer_provider.metrics_exported = bool(readers)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        excluded_urls="healthz,readyz",
        exclude_spans=["receive", "send"],
    )
    _lean_stack(app, tracer_provider)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        tracer=tracer_provider.get_tracer(service_name),
        meter=meter_provider.get_meter(service_name),
        metrics_exported=bool(readers),
    )


class _StatementTracer(EngineTracer):
    """The engine's statement spans without its pool metrics, for an app whose metrics nobody reads.

    The connection-usage metric is four counter adds per checkout and checkin (~5 µs each through
    the SDK, ~20 µs of a conversation turn) recorded into a meter provider without a reader. The SDK
    takes readers only when the provider is made, so without one these listeners could never matter.
    """

    _POOL_EVENTS = frozenset({"connect", "close", "checkin", "checkout"})

    @classmethod
    def _register_event_listener(cls, target: Any, identifier: str, func: Any, *args: Any, **kw: Any) -> None:
        if identifier not in cls._POOL_EVENTS:
            super()._register_event_listener(target, identifier, func, *args, **kw)  # type: ignore[no-untyped-call]


class RouteNames:
    """The instrumentation's span name and attributes, remembered per (method, path) for static routes.

    Exact: for a given method and path (and root path) the instrumentation's answer never changes.
    Only answers whose route *is* the path are kept, so the entries are bounded by the app's routes
    (times the methods clients use, capped by `limit`), whatever paths clients send.
    """

    def __init__(self, details: SpanDetails, limit: int = 512) -> None:
        self._details = details
        self._known: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self._limit = limit

    def __call__(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        key = (scope.get("method", ""), scope.get("path", ""), scope.get("root_path", ""))
        known = self._known.get(key)
        if known is not None:
            name, attributes = known
            return name, dict(attributes)  # the middleware adds to it
        name, attributes = self._details(scope)
        if attributes.get(HTTP_ROUTE) == key[1] and len(self._known) < self._limit:
            self._known[key] = (name, dict(attributes))
        return name, attributes


class _SwitchingTracerProvider(TracerProvider):
    """A tracer provider that knows whether anything reads what the instrumentation records."""

    traces_exported = False
    metrics_exported = False

    @property
    def exporting(self) -> bool:
        return self.traces_exported or self.metrics_exported

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.traces_exported = True


class TelemetrySwitch:
    """The instrumented stack while something is exported, else the app under the caller's trace.

    `lean`, when given, is `app` without three layers that do nothing on the quiet side, used for
    requests that no outer app has put its own telemetry or body limit on (`_quiet_layers`)."""

    def __init__(
        self,
        provider: _SwitchingTracerProvider,
        instrumented: ASGIApp,
        app: ASGIApp,
        lean: ASGIApp | None = None,
    ) -> None:
        self.provider = provider
        self.instrumented = instrumented
        self.app = app
        self.lean = lean
        self._id_generator = RandomIdGenerator()
        self._fields = frozenset(field.encode() for field in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.provider.exporting or scope["type"] not in ("http", "websocket"):
            await self.instrumented(scope, receive, send)
            return
        app = self.app
        if self.lean is not None and _NATIVE_TELEMETRY not in scope and _BODY_LIMIT not in scope:
            app = self.lean
        token = otel_context.attach(self._context(scope))
        try:
            await app(scope, receive, send)
        finally:
            otel_context.detach(token)

    def _context(self, scope: Scope) -> otel_context.Context:
        """A non-recording span's context: the caller's trace when it sent one, else a new trace
        (sampled, as the SDK's default sampler would have made it)."""
        context = None
        parent = trace.INVALID_SPAN_CONTEXT
        if any(name in self._fields for name, _ in scope["headers"]):
            context = propagate.extract(cast(dict[str, Any], scope), getter=asgi_getter)
            parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags = parent.trace_id, parent.trace_flags
        else:
            trace_id = self._id_generator.generate_trace_id()
            flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id,
                self._id_generator.generate_span_id(),
                is_remote=False,
                trace_flags=flags,
                trace_state=parent.trace_state,
            )
        )
        return trace.set_span_in_context(span, context)


def _lean_stack(app: FastAPI, provider: _SwitchingTracerProvider) -> None:
    """When the instrumented middleware stack is built: remember span names (`RouteNames`), and
    put the `TelemetrySwitch` in front, whose quiet side skips both of the instrumentation's layers."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = build()
        middleware = getattr(stack, "app", None)  # the instrumentation's outer ServerErrorMiddleware
        if not (isinstance(stack, ServerErrorMiddleware) and isinstance(middleware, OpenTelemetryMiddleware)):
            return stack
        middleware.default_span_details = RouteNames(middleware.default_span_details)
        return TelemetrySwitch(provider, stack, middleware.app, _quiet_layers(middleware.app))

    setattr(app, "build_middleware_stack", build_middleware_stack)  # noqa: B010 (mypy: method assignment)


# Set in the scope by FastAPI when its own (native) telemetry is on, here or in an app mounting this one.
_NATIVE_TELEMETRY = "fastapi.telemetry"
# Set in the scope by Starlette when a body limit applies to the request; written out, since the
# Starlette releases that FastAPI 0.115 allows have no body limits, nor the module that names it.
_BODY_LIMIT = "starlette.max_body_size"


def _quiet_layers(error_layer: ASGIApp) -> ASGIApp | None:
    """The quiet side's stack without the layers that only act on what it never has.

    Between the instrumentation's `ServerErrorMiddleware` and the app's own middleware sit three
    layers: the instrumentation's exception recorder (records into the current span, which on the
    quiet side never records), FastAPI's native-telemetry exception observer (acts only when
    `fastapi.telemetry` is in the scope) and FastAPI's app-wide body limit (acts only when the scope
    carries a maximum body size, and wraps nothing when the app sets none). A copy of the error layer
    around the app's own middleware skips the three (~5 µs per request in-process): the same error
    handler and debug flag, the same middleware instances. None when the stack is not that shape.
    """
    recorder = getattr(error_layer, "app", None)
    observer = getattr(recorder, "app", None)
    limit: Any = getattr(observer, "app", None)
    # Matched by class name: FastAPI's two layers live in private modules (and FastAPI releases
    # before 0.165 have neither), so a FastAPI shaped otherwise keeps the whole stack.
    if not (
        isinstance(error_layer, ServerErrorMiddleware)
        and type(recorder).__name__ == "ExceptionHandlerMiddleware"
        and type(observer).__name__ == "ExceptionTelemetryMiddleware"
        and type(limit).__name__ == "AppBodyLimitMiddleware"
        and type(getattr(limit, "app", None)).__name__ != "RequestBodyLimitMiddleware"  # no app body limit
    ):
        return None
    return ServerErrorMiddleware(limit.app, handler=error_layer.handler, debug=error_layer.debug)
