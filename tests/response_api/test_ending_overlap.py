"""A plain response's two ending writes run together: its conversation append (llm-api) and its row.

Nobody knows a plain response's id before its 200, so the row may be written while the append runs;
the client is still answered only once both are stored. Each way one of them can fail leaves what
the one-after-the-other order left, or less: a row whose append failed is deleted, a new
conversation whose row could not be written is withdrawn (llm-api's internal DELETE), and a
conversation deleted meanwhile is reported and stored as none. A background response's new
conversation, made before its row, is withdrawn too when that row cannot be written (its client
got a 503 and never learned the id).

Faults are real: llm-api's creation of new conversations is held or refused at `create_gate`,
response-api's own Postgres is stopped (`own_postgres`). Order is observed, not timed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI
from sqlalchemy import text

from apps.common.db import create_engine
from apps.gateway.embedded import EmbeddedPostgres
from apps.response_api.services.store import ResponseStore
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import MODEL, Peers, ServerFactory
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually_async as eventually
from tests.response_api.conftest import CreateGate
from tests.response_api.scripts import answer, call, tool_round
from tests.response_api.test_conversation_early import http_client, stored_responses
from tests.response_api.test_durability import response_api

PLAIN = {"model": MODEL, "input": "Write it down.", "tools": []}


async def post_while_down(
    postgres: EmbeddedPostgres, url: str, issuer: TestIssuer, user: str, request: dict[str, Any]
) -> httpx.Response:
    """`user`'s `POST /v1/responses` while response-api's own Postgres is stopped (started again after)."""
    await asyncio.to_thread(postgres.stop)
    try:
        async with http_client(url, issuer, user) as http:
            return await http.post("/v1/responses", json=request)
    finally:
        await asyncio.to_thread(postgres.start)


async def conversations_of(peers: Peers, issuer: TestIssuer, user: str) -> list[str]:
    async with http_client(peers.llm_api_url, issuer, user) as http:
        listed = await http.get("/v1/conversations", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    return [c["id"] for c in listed.json()["data"]]


async def until_stored(database_url: str, count: int) -> None:
    for _ in range(600):
        if await stored_responses(database_url) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {count} stored responses")


async def test_the_row_is_written_while_the_append_runs(
    create_gate: CreateGate,
    response_api_url: str,
    issuer: TestIssuer,
    upstream: FakeUpstream,
    database_url: str,
    llm: AsyncOpenAI,
) -> None:
    before = await stored_responses(database_url)
    upstream.enqueue(answer("Both at once."))
    async with http_client(response_api_url, issuer, "alice") as http:
        task = asyncio.create_task(http.post("/v1/responses", json=PLAIN))
        await eventually(lambda: create_gate.waiting >= 1, "the append (which creates) was held")
        await until_stored(database_url, before + 1)  # while the append is still held
        assert not task.done()  # not acknowledged before both are stored
        create_gate.opened.set()
        answered = await task
        assert answered.status_code == 200, answered.text
        body = answered.json()
        stored = await http.get(f"/v1/responses/{body['id']}")
    assert stored.json() == body
    conversation = body["conversation"]["id"]
    items = await llm.conversations.items.list(conversation, order="asc")
    assert [item.id for item in items.data][1:] == [item["id"] for item in body["output"]]


async def test_an_append_that_fails_after_the_row_was_written_leaves_no_row(
    create_gate: CreateGate,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    peers: Peers,
    upstream: FakeUpstream,
    database_url: str,
) -> None:
    before = await stored_responses(database_url)
    upstream.enqueue(answer("Not kept."))
    with response_api_server(storage_retry_seconds=0.5) as url:
        async with http_client(url, issuer, "overlap-append-fails") as http:
            task = asyncio.create_task(http.post("/v1/responses", json=PLAIN))
            await eventually(lambda: create_gate.waiting >= 1, "the append was held")
            await until_stored(database_url, before + 1)
            create_gate.fail_from_now()  # llm-api away past the budget
            answered = await task
    assert answered.status_code == 503, answered.text
    assert answered.json()["error"]["code"] == "storage_unavailable"
    assert await stored_responses(database_url) == before
    assert await conversations_of(peers, issuer, "overlap-append-fails") == []


@pytest.mark.parametrize("llm_api_too", [False, True], ids=["row-fails", "both-fail"])
async def test_a_row_that_cannot_be_written_leaves_no_new_conversation(
    llm_api_too: bool,
    own_postgres: EmbeddedPostgres,
    create_gate: CreateGate,
    issuer: TestIssuer,
    peers: Peers,
    upstream: FakeUpstream,
) -> None:
    user = f"overlap-row-fails-{llm_api_too}"
    if llm_api_too:
        create_gate.fail_from_now()
    else:
        create_gate.opened.set()
    upstream.enqueue(answer("Not kept either."))
    with response_api(own_postgres.url, issuer, peers, storage_retry_seconds=0.5) as url:
        answered = await post_while_down(own_postgres, url, issuer, user, PLAIN)
    assert answered.status_code == 503, answered.text
    assert answered.json()["error"]["code"] == "storage_unavailable"
    assert await stored_responses(own_postgres.url) == 0
    assert await conversations_of(peers, issuer, user) == []  # withdrawn, or never made


async def test_a_background_response_that_cannot_be_stored_leaves_no_new_conversation(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, peers: Peers
) -> None:
    user = "background-row-fails"
    with response_api(own_postgres.url, issuer, peers, storage_retry_seconds=0.5) as url:
        answered = await post_while_down(own_postgres, url, issuer, user, {**PLAIN, "background": True})
    assert answered.status_code == 503, answered.text
    assert await conversations_of(peers, issuer, user) == []


async def test_a_plain_response_whose_conversation_is_deleted_meanwhile_is_stored_without_it(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    conversation = (await llm.conversations.create()).id
    hold = threading.Event()
    upstream.enqueue(Reply(content="Nowhere to go.", hold=hold))
    request: dict[str, Any] = {"model": MODEL, "input": "hi", "conversation": conversation}
    task = asyncio.create_task(client.responses.create(**request))
    await eventually(lambda: len(upstream.requests) == 1, "the model was asked")
    try:
        await llm.conversations.delete(conversation)
    finally:
        hold.set()
    answered = await task
    assert answered.status == "completed" and answered.conversation is None
    stored = await client.responses.retrieve(answered.id)
    assert stored.conversation is None


async def named_conversation(peers: Peers, issuer: TestIssuer, user: str) -> tuple[str, list[str]]:
    """A conversation of `user` holding one earlier exchange, and its item ids."""
    earlier = [
        {"type": "message", "role": "user", "content": "Earlier question."},
        {"type": "message", "role": "assistant", "content": "Earlier answer."},
    ]
    async with http_client(peers.llm_api_url, issuer, user) as http:
        made = await http.post("/v1/conversations", json={"items": earlier})
        assert made.status_code == 200, made.text
        conversation = made.json()["id"]
    return conversation, await items_of(peers, issuer, user, conversation)


async def items_of(peers: Peers, issuer: TestIssuer, user: str, conversation: str) -> list[str]:
    async with http_client(peers.llm_api_url, issuer, user) as http:
        listed = await http.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"})
    assert listed.status_code == 200, listed.text
    return [item["id"] for item in listed.json()["data"]]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_response_that_cannot_be_stored_leaves_its_named_conversation_as_it_was(
    stream: bool, own_postgres: EmbeddedPostgres, issuer: TestIssuer, peers: Peers, upstream: FakeUpstream
) -> None:
    """The append lands, the row cannot be written: the client is told the response failed, so its
    items are withdrawn from the conversation, as llm-api keeps a chat turn it could not store out."""
    user = f"named-row-fails-{stream}"
    conversation, before = await named_conversation(peers, issuer, user)
    upstream.enqueue(answer("Not kept in the conversation."))
    request = {**PLAIN, "conversation": conversation, "stream": stream}
    with response_api(own_postgres.url, issuer, peers, storage_retry_seconds=0.5) as url:
        answered = await post_while_down(own_postgres, url, issuer, user, request)
    if stream:
        assert answered.status_code == 200 and "event: error" in answered.text, answered.text
        assert "response.completed" not in answered.text
    else:
        assert answered.status_code == 503, answered.text
    assert "storage_unavailable" in answered.text
    assert await items_of(peers, issuer, user, conversation) == before


async def test_a_background_response_whose_end_cannot_be_stored_leaves_its_named_conversation_as_it_was(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, peers: Peers, upstream: FakeUpstream
) -> None:
    user = "named-background-end-fails"
    conversation, before = await named_conversation(peers, issuer, user)
    hold = threading.Event()
    upstream.enqueue(Reply(content="Not kept either.", hold=hold))
    asked = len(upstream.requests)
    request = {**PLAIN, "conversation": conversation, "background": True}
    budgets = {"storage_retry_seconds": 0.5, "background_storage_retry_seconds": 0.5}
    withdrawn = f"DELETE /internal/conversations/{conversation}/items"
    with response_api(own_postgres.url, issuer, peers, **budgets) as url:
        async with http_client(url, issuer, user) as http:
            started = await http.post("/v1/responses", json=request)
            assert started.status_code == 200, started.text
            await eventually(lambda: len(upstream.requests) > asked, "the model was asked")
            await asyncio.to_thread(own_postgres.stop)
            try:
                hold.set()
                await eventually(lambda: withdrawn in peers.llm_api_requests(), "the items were withdrawn")
            finally:
                await asyncio.to_thread(own_postgres.start)
    assert await items_of(peers, issuer, user, conversation) == before


async def test_a_failed_insert_is_never_silenced_by_a_failed_append(
    create_gate: CreateGate,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both writes fail: the append (llm-api away) and the insert, with an error that is no storage
    # outage (a bug). The client gets an error either way, but the bug must reach the log.
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the insert's own bug")

    monkeypatch.setattr(ResponseStore, "insert", broken)
    seen: list[logging.LogRecord] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Seen()
    ending = logging.getLogger("apps.response_api.services.ending")
    upstream.enqueue(answer("Not kept."))
    with response_api_server(storage_retry_seconds=0.5) as url:
        ending.addHandler(handler)  # after the app set up logging (it replaces the root's handlers)
        try:
            create_gate.fail_from_now()
            async with http_client(url, issuer, "overlap-insert-bug") as http:
                answered = await http.post("/v1/responses", json=PLAIN)
        finally:
            ending.removeHandler(handler)
    assert answered.status_code >= 500, answered.text
    assert any(
        record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError) for record in seen
    ), [record.getMessage() for record in seen]


async def test_a_row_undone_after_its_append_failed_keeps_its_tool_executions(
    create_gate: CreateGate,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    upstream: FakeUpstream,
    database_url: str,
) -> None:
    """The MCP calls did run (their side effects stay): their records stay, as they do for a
    response that is not stored at all."""
    before = await stored_responses(database_url)
    upstream.enqueue(tool_round(call("add", {"a": 1, "b": 2}, "call_undone_kept")), answer("3."))
    with response_api_server(storage_retry_seconds=0.5) as url:
        async with http_client(url, issuer, "overlap-undo-keeps-calls") as http:
            task = asyncio.create_task(http.post("/v1/responses", json={"model": MODEL, "input": "Add."}))
            await eventually(lambda: create_gate.waiting >= 1, "the append was held")
            await until_stored(database_url, before + 1)
            create_gate.fail_from_now()
            answered = await task
    assert answered.status_code == 503, answered.text
    assert await stored_responses(database_url) == before
    engine = create_engine(database_url, schema="response_api", pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT tool_name, status FROM tool_executions WHERE call_id = 'call_undone_kept'")
            )
            assert [tuple(row) for row in rows] == [("add", "completed")]
    finally:
        await engine.dispose()
