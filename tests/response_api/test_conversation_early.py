"""A streamed response's new conversation is made while its first model round runs.

The conversation must exist before its id is announced (`response.created`), but making it is a
round trip to llm-api: it overlaps the model round, and the stream's first event waits for it. The
`create_gate` holds llm-api's creation of new conversations, so the order is observed, not timed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from apps.common.db import async_url
from apps.common.sse import aiter_events
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL, ServerFactory
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.harness.waiting import eventually_async as eventually
from tests.response_api.conftest import CreateGate
from tests.response_api.scripts import call, tool_round
from tests.response_api.test_approvals import TOOLS, approval, ask
from tests.response_api.test_loop import executions

STREAM = {"model": MODEL, "input": "hi", "stream": True}


@asynccontextmanager
async def http_client(url: str, issuer: TestIssuer, user: str = "alice") -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {issuer.mint(user)}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT) as http:
        yield http


async def stored_responses(database_url: str) -> int:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            counted = await connection.execute(text("select count(*) from response_api.responses"))
            return int(counted.scalar_one())
    finally:
        await engine.dispose()


async def model_asked_while_creating(upstream: FakeUpstream, gate: CreateGate) -> None:
    """The response's first model round has started while its new conversation is held at `gate`."""
    await eventually(
        lambda: len(upstream.requests) == 1 and gate.waiting >= 1,
        "the model was asked while the conversation was being made",
    )


async def admitted(http: httpx.AsyncClient) -> bool:
    """Whether a plain response is let in (the server runs one response at a time)."""
    answer = await http.post("/v1/responses", json={"model": MODEL, "input": "next"})
    assert answer.status_code in (200, 503), answer.text
    return answer.status_code == 200


async def test_the_model_round_overlaps_the_create_and_no_event_precedes_it(
    response_api_url: str,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
    create_gate: CreateGate,
) -> None:
    upstream.enqueue(Reply(content="early bird"))
    started = asyncio.Event()
    events: list[dict[str, Any]] = []
    existed: list[str] = []

    async def read(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", "/v1/responses", json=STREAM) as response:
            started.set()
            assert response.status_code == 200
            async for sse in aiter_events(response):
                events.append(event := sse.json())
                if event["type"] == "response.created":  # announced: it exists already
                    conversation = event["response"]["conversation"]["id"]
                    existed.append((await llm.conversations.retrieve(conversation)).id)

    async with http_client(response_api_url, issuer) as http:
        reading = asyncio.create_task(read(http))
        await model_asked_while_creating(upstream, create_gate)
        assert not started.is_set() and not events  # nothing reached the client: not even the headers
        create_gate.opened.set()
        await reading

    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]
    assert final["type"] == "response.completed"
    assert final["response"]["output"][0]["content"][0]["text"] == "early bird"
    conversation = final["response"]["conversation"]["id"]
    assert existed == [conversation]
    items = await llm.conversations.items.list(conversation, order="asc")
    assert [item.type for item in items.data] == ["message", "message"]


async def test_a_create_that_fails_while_the_model_streams_is_a_503_and_stores_nothing(
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    database_url: str,
    upstream: FakeUpstream,
    create_gate: CreateGate,
) -> None:
    model = threading.Event()
    upstream.enqueue(Reply(content=["never", " sent"], hold=model))
    before = await stored_responses(database_url)
    try:
        with response_api_server(max_running_responses=1, storage_retry_seconds=3) as url:
            async with http_client(url, issuer) as http:
                sending = asyncio.create_task(http.post("/v1/responses", json=STREAM))
                await model_asked_while_creating(upstream, create_gate)
                create_gate.fail_from_now()
                answer = await sending
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"].startswith("application/json")  # not a stream
                assert orjson.loads(answer.content)["error"]["code"] == "storage_unavailable"
                assert await stored_responses(database_url) == before
                # The model round was abandoned before the 503: the one slot is free at once.
                create_gate.refuse = False
                assert await admitted(http)
    finally:
        model.set()


async def test_a_client_leaving_while_the_conversation_is_made_leaves_no_run_behind(
    response_api_server: ServerFactory, issuer: TestIssuer, upstream: FakeUpstream, create_gate: CreateGate
) -> None:
    model = threading.Event()
    upstream.enqueue(Reply(content=["never", " sent"], hold=model))
    try:
        with response_api_server(max_running_responses=1) as url:
            async with http_client(url, issuer) as http:

                async def read() -> None:
                    async with http.stream("POST", "/v1/responses", json=STREAM) as response:
                        async for _ in response.aiter_bytes():
                            pass

                reading = asyncio.create_task(read())
                await model_asked_while_creating(upstream, create_gate)
                reading.cancel()  # the client has gone: its connection is closed
                with suppress(asyncio.CancelledError):
                    await reading
            create_gate.opened.set()  # the conversation is made after all
            async with http_client(url, issuer) as http:
                # A run left behind would hold the one slot until its model answers (never, here).
                for _ in range(600):
                    if await admitted(http):
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("the abandoned response still holds its slot")
    finally:
        model.set()


async def test_no_tool_runs_before_the_new_conversation_exists(
    response_api_url: str,
    issuer: TestIssuer,
    database_url: str,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
    create_gate: CreateGate,
) -> None:
    upstream.enqueue(tool_round(call("add", {"a": 2, "b": 3}, "call_a")), Reply(content="5"))
    events: list[dict[str, Any]] = []

    async def read(http: httpx.AsyncClient) -> None:
        async with http.stream("POST", "/v1/responses", json=STREAM) as response:
            assert response.status_code == 200
            events.extend([sse.json() async for sse in aiter_events(response)])

    async with http_client(response_api_url, issuer) as http:
        reading = asyncio.create_task(read(http))
        await model_asked_while_creating(upstream, create_gate)
        ran_before = list(mcp_tools.calls)  # the model's tool call waits for the conversation
        create_gate.opened.set()
        await reading

    assert ran_before == []
    final = events[-1]
    assert final["type"] == "response.completed"
    assert mcp_tools.calls == [("add", {"a": 2, "b": 3})]
    rows = await executions(database_url, final["response"]["id"])
    assert [(r["tool_name"], r["status"]) for r in rows] == [("add", "completed")]


async def test_a_create_that_fails_stops_the_response_before_its_tools_run(
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    database_url: str,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
    create_gate: CreateGate,
) -> None:
    upstream.enqueue(tool_round(call("add", {"a": 2, "b": 3}, "call_a")), Reply(content="5"))
    before = await stored_responses(database_url)
    with response_api_server(storage_retry_seconds=3) as url:
        async with http_client(url, issuer) as http:
            sending = asyncio.create_task(http.post("/v1/responses", json=STREAM))
            await model_asked_while_creating(upstream, create_gate)
            create_gate.fail_from_now()
            answer = await sending
    assert answer.status_code == 503, answer.text
    # A tool call would be a side effect of a response nobody can see, and nothing would record it.
    assert mcp_tools.calls == []
    assert len(upstream.requests) == 1
    assert await stored_responses(database_url) == before


async def test_an_approved_call_waits_for_the_new_conversation_and_does_not_run_without_it(
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    client: AsyncOpenAI,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
    create_gate: CreateGate,
) -> None:
    create_gate.opened.set()
    first = await ask(client, upstream)  # `add` waits for approval
    request = next(item for item in first.output if item.type == "mcp_approval_request")
    assert first.conversation is not None
    # Its conversation is gone: the continuation starts a new one, made while the approved call would run.
    await llm.conversations.delete(first.conversation.id)
    create_gate.opened.clear()
    create_gate.waiting = 0
    ran_before = list(mcp_tools.calls)
    continued = {
        **STREAM,
        "previous_response_id": first.id,
        "tools": TOOLS,
        "input": approval(request.id, approve=True),
    }
    with response_api_server(storage_retry_seconds=3) as url:
        async with http_client(url, issuer) as http:
            sending = asyncio.create_task(http.post("/v1/responses", json=continued))
            await eventually(lambda: create_gate.waiting >= 1, "the new conversation is being made")
            create_gate.fail_from_now()
            answer = await sending
    assert answer.status_code == 503, answer.text
    assert mcp_tools.calls == ran_before  # the approved `add` did not run
