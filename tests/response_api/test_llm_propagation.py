"""response-api's calls to llm-api carry the caller's trace context and send JSON.

Its aiohttp sessions have no instrumentation (apps.common.http), so the `traceparent` header is
put in by hand; these check it arrives, on a model round and on a conversation call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from opentelemetry.sdk.trace import TracerProvider

from apps.common.http import make_session
from apps.response_api.services.conversations import Conversations
from apps.response_api.services.llm import LlmClient, RoundEnd, TextDelta
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT

Seen = list[dict[str, str]]


@pytest.fixture(scope="module")
def llm_api() -> Iterator[tuple[str, Seen]]:
    app = FastAPI()
    seen: Seen = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        seen.append({**request.headers, "body-model": (await request.json())["model"]})

        async def body() -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    @app.post("/internal/conversations/{conversation_id}/items")
    async def append(conversation_id: str, request: Request) -> dict[str, Any]:
        seen.append({**request.headers, "body": str(await request.json()), "query": str(request.url.query)})
        return {"object": "list", "data": [], "has_more": False}

    with serve(app) as server:
        yield server.url, seen


async def test_a_model_round_and_a_conversation_call_carry_the_trace(llm_api: tuple[str, Seen]) -> None:
    url, seen = llm_api
    tracer = TracerProvider().get_tracer("test")
    headers = {"Authorization": "Bearer caller"}
    async with make_session(read_timeout=CLIENT_TIMEOUT) as http:
        with tracer.start_as_current_span("request") as span:
            trace_id = f"{span.get_span_context().trace_id:032x}"
            events = [event async for event in LlmClient(http, url).stream({"model": "m"}, headers)]
            await Conversations(http, url, None).append(
                "conv_new", [], headers, key="resp_1", budget=CLIENT_TIMEOUT, create=True
            )
    assert events == [TextDelta("Hi"), RoundEnd("stop", None)]
    assert len(seen) == 2
    for request in seen:
        assert request["traceparent"].split("-")[1] == trace_id
        assert request["authorization"] == "Bearer caller"
        assert request["content-type"] == "application/json"
    assert seen[0]["body-model"] == "m"
    assert (seen[1]["body"], seen[1]["query"], seen[1]["idempotency-key"]) == (
        "{'items': []}",
        "create=true",
        "resp_1",
    )
