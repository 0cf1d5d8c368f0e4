"""With nothing exported, requests skip the instrumentation but the trace context still passes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware

from apps.common.telemetry import Telemetry, TelemetrySwitch, setup_telemetry

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def quiet() -> AsyncIterator[tuple[httpx.AsyncClient, Telemetry]]:
    app = FastAPI()

    @app.get("/onward")
    async def onward() -> dict[str, object]:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # what a call to the model or another app carries
        return {"headers": headers, "recording": trace.get_current_span().is_recording()}

    telemetry = setup_telemetry(
        app, service_name="quiet", version="0", environment="test", otlp_endpoint=None
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client, telemetry
    telemetry.shutdown()


async def test_the_callers_trace_continues_without_a_recorded_span(
    quiet: tuple[httpx.AsyncClient, Telemetry],
) -> None:
    client, _ = quiet
    answer = (await client.get("/onward", headers={"traceparent": CALLER})).json()
    assert answer["recording"] is False
    version, trace_id, span_id, flags = answer["headers"]["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER.split("-")[1], "01")
    assert span_id != CALLER.split("-")[2]  # this hop's own span id

    unsampled = CALLER[:-2] + "00"
    answer = (await client.get("/onward", headers={"traceparent": unsampled})).json()
    assert answer["headers"]["traceparent"].endswith("-00")


async def test_a_request_without_context_starts_a_trace(quiet: tuple[httpx.AsyncClient, Telemetry]) -> None:
    client, _ = quiet
    first = (await client.get("/onward")).json()["headers"]["traceparent"].split("-")
    second = (await client.get("/onward")).json()["headers"]["traceparent"].split("-")
    assert first[0] == "00" and first[3] == "01" and int(first[1], 16) and int(first[2], 16)
    assert first[1] != second[1]


async def test_a_span_processor_added_later_turns_the_instrumentation_on(
    quiet: tuple[httpx.AsyncClient, Telemetry],
) -> None:
    client, telemetry = quiet
    exporter = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    answer = (await client.get("/onward", headers={"traceparent": CALLER})).json()
    assert answer["recording"] is True
    [server] = [span for span in exporter.get_finished_spans() if span.kind == trace.SpanKind.SERVER]
    assert server.context.trace_id == int(CALLER.split("-")[1], 16)
    assert server.attributes is not None and server.attributes.get("http.route") == "/onward"


async def test_the_quiet_side_skips_the_layers_that_do_nothing_there() -> None:
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    telemetry = setup_telemetry(app, service_name="lean", version="0", environment="test", otlp_endpoint=None)
    switch = app.build_middleware_stack()
    assert isinstance(switch, TelemetrySwitch) and isinstance(switch.lean, ServerErrorMiddleware)
    # The error layer's copy goes straight to the app's own middleware (here Starlette's handlers).
    assert isinstance(switch.lean.app, ExceptionMiddleware)
    taken: list[str] = []

    def spy(name: str, inner: Any) -> Any:
        async def layer(scope: Any, receive: Any, send: Any) -> None:
            taken.append(name)
            await inner(scope, receive, send)

        return layer

    switch.app, switch.lean = spy("full", switch.app), spy("lean", switch.lean)
    app.middleware_stack = switch
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answer = await client.get("/boom")
    assert answer.status_code == 500 and taken == ["lean"]  # the last-resort 500 is still there
    # An outer app's native telemetry or body limit in the scope: the full stack, which acts on them.
    for key in ("fastapi.telemetry", MAX_BODY_SIZE_SCOPE_KEY):
        taken.clear()
        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": "/nowhere",
            "headers": [],
            key: None,
        }
        await switch(scope, _disconnected, _ignore)
        assert taken == ["full"]
    telemetry.shutdown()


async def _disconnected() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _ignore(message: Any) -> None:
    return None
