"""The llm-api client on malformed streams: a chunk that is not a JSON object is llm-api's fault."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from apps.common.http import make_session
from apps.response_api.services.llm import LlmApiError, LlmClient, RoundEnd, TextDelta
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT

CHUNKS = {
    "not-json": b"data: {not json\n\n",
    "not-an-object": b"data: [1, 2]\n\n",
    "bad-choices": b'data: {"choices": [{"delta": "oops"}]}\n\n',
}


@pytest.fixture(scope="module")
def broken_llm_api() -> Iterator[str]:
    app = FastAPI()

    @app.post("/{kind}/v1/chat/completions")
    async def chat(kind: str) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n'
            yield CHUNKS[kind]
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    with serve(app) as server:
        yield server.url


@pytest.mark.parametrize("kind", sorted(CHUNKS))
async def test_a_malformed_chunk_is_a_clear_upstream_error(broken_llm_api: str, kind: str) -> None:
    async with make_session(read_timeout=CLIENT_TIMEOUT) as http:
        client = LlmClient(http, f"{broken_llm_api}/{kind}")
        with pytest.raises(LlmApiError) as raised:
            async for _ in client.stream({"model": "m", "messages": []}, {}):
                pass
    assert raised.value.status == 502 and raised.value.code == "bad_upstream_response"
    assert "malformed" in raised.value.message


@pytest.fixture(scope="module")
def unstorable_llm_api() -> Iterator[str]:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            # Valid JSON all the same (an unpaired surrogate escape; an escaped NUL).
            yield b'data: {"choices": [{"delta": {"content": "a\\ud800b"}}]}\n\n'
            yield b'data: {"choices": [{"delta": {"content": "c\\u0000d"}, "finish_reason": "stop"}]}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    with serve(app) as server:
        yield server.url


async def test_text_postgres_cannot_store_is_replaced_not_a_failed_round(unstorable_llm_api: str) -> None:
    async with make_session(read_timeout=CLIENT_TIMEOUT) as http:
        client = LlmClient(http, unstorable_llm_api)
        events = [event async for event in client.stream({"model": "m", "messages": []}, {})]
    texts = [event.text for event in events if isinstance(event, TextDelta)]
    assert texts == ["a\ufffdb", "c\ufffdd"]
    assert isinstance(events[-1], RoundEnd) and events[-1].finish_reason == "stop"
