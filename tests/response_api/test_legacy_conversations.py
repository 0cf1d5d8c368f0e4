"""Migration 0003: response-api's former conversations keep their rows and move to llm-api.

Step 1 (the Alembic migration) is run on a database of its own, from 0002 with data in it; step 2
(the copy every replica starts) against the shared test database and the real llm-api. Also the
guards of llm-api's internal conversation routes, which the copy and every response go through.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from alembic import command
from openai import AsyncOpenAI
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.db import create_engine
from apps.common.migrations import alembic_config, upgrade
from tests.harness.response_api import INTERNAL_TOKEN, MODEL, Peers, ServerFactory
from tests.harness.upstream import FakeUpstream
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.response_api.scripts import answer
from tests.response_api.test_conversation_withdraw import waiting_backends
from tests.response_api.test_conversations import POLLS, chat_view, items_of, summary

PACKAGE = "apps.response_api"


def message(item_id: str, role: str, text_: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {
        "id": item_id,
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [{"type": kind, "text": text_}],
    }


async def add_response(
    engine: AsyncEngine,
    conversation_id: str,
    user_id: str,
    *,
    status: str,
    inputs: list[dict[str, Any]],
    output: list[dict[str, Any]],
    at: str,
) -> None:
    response_id = f"resp_{secrets.token_hex(8)}"
    body = {"id": response_id, "status": status, "output": output, "conversation": {"id": conversation_id}}
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO responses (id, user_id, status, model, conversation_id, body, created_at)"
                " VALUES (:id, :user, :status, :model, :conv, CAST(:body AS jsonb), :at)"
            ),
            {
                "id": response_id,
                "user": user_id,
                "status": status,
                "model": MODEL,
                "conv": conversation_id,
                "body": orjson.dumps(body).decode(),
                "at": datetime.fromisoformat(at),
            },
        )
        for position, item in enumerate(inputs):
            await connection.execute(
                text("INSERT INTO response_input_items VALUES (:id, :pos, CAST(:item AS jsonb))"),
                {"id": response_id, "pos": position, "item": orjson.dumps(item).decode()},
            )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, schema="response_api", pool_size=1)
    yield engine
    await engine.dispose()


async def test_old_conversations_are_copied_to_llm_api(
    engine: AsyncEngine,
    response_api_server: ServerFactory,
    client: AsyncOpenAI,
    llm: AsyncOpenAI,
    other_llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    mine = f"conv_legacy{secrets.token_hex(6)}"
    taken = (await other_llm.conversations.create()).id  # an id llm-api already gives someone else
    async with engine.begin() as connection:
        for conversation_id, user in ((mine, "alice"), (taken, "alice")):
            await connection.execute(
                text("INSERT INTO legacy_conversations (id, user_id, created_at) VALUES (:id, :user, :at)"),
                {
                    "id": conversation_id,
                    "user": user,
                    "at": datetime.fromisoformat("2025-01-02T03:04:05+00:00"),
                },
            )
    await add_response(
        engine,
        mine,
        "alice",
        status="completed",
        at="2025-01-02T03:04:06+00:00",
        inputs=[message("msg_old1", "user", "Old question")],
        output=[message("msg_old2", "assistant", "Old answer")],
    )
    await add_response(
        engine,
        mine,
        "alice",
        status="in_progress",
        at=datetime.now(UTC).isoformat(),  # still running (an old one would be swept as failed first)
        inputs=[message("msg_old3", "user", "never finished")],
        output=[],
    )

    with response_api_server():  # every replica starts the copy
        for _ in range(POLLS):
            async with engine.connect() as connection:
                left = (await connection.execute(text("SELECT id FROM legacy_conversations"))).scalars().all()
            if mine not in left:
                break
            await asyncio.sleep(0.05)
    assert taken in left and mine not in left  # refused ids stay for an operator; the rest move

    copied = await llm.conversations.retrieve(mine)
    assert copied.created_at == 1735787045
    items = await items_of(llm, mine)
    assert [summary(item) for item in items] == [
        ("message", "user", "Old question"),
        ("message", "assistant", "Old answer"),
    ]
    assert [item.id for item in items] == ["msg_old1", "msg_old2"]

    upstream.enqueue(answer("Still here."))
    await client.responses.create(model=MODEL, input="Continue", conversation=mine)
    assert chat_view(upstream.requests[0]["messages"]) == [
        ("user", "Old question"),
        ("assistant", "Old answer"),
        ("user", "Continue"),
    ]
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM legacy_conversations WHERE id = :id"), {"id": taken})


async def test_repeating_an_import_changes_nothing(peers: Peers, llm: AsyncOpenAI) -> None:
    conversation_id = f"conv_again{secrets.token_hex(6)}"
    payload = {
        "id": conversation_id,
        "user_id": "alice",
        "created_at": "2025-01-01T00:00:00+00:00",
        "items": [{"created_at": "2025-01-01T00:00:01+00:00", "item": message("msg_x1", "user", "hi")}],
    }
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        unguarded = await http.post("/internal/conversations/import", json=payload)
        assert unguarded.status_code == 403
        guarded = {"X-Internal-Token": INTERNAL_TOKEN}
        first = await http.post("/internal/conversations/import", json=payload, headers=guarded)
        again = await http.post("/internal/conversations/import", json=payload, headers=guarded)
        stolen = await http.post(
            "/internal/conversations/import", json={**payload, "user_id": "mallory"}, headers=guarded
        )
    assert first.json()["created"] is True and again.json()["created"] is False
    assert stolen.status_code == 409
    assert [summary(item) for item in await items_of(llm, conversation_id)] == [("message", "user", "hi")]


async def test_an_import_racing_another_import_of_it_is_a_repeat(peers: Peers, database_url: str) -> None:
    """Two imports of one conversation at once (response-api's copy running twice): the later
    waits on the id's unique index behind the earlier's uncommitted insert, then answers as a
    repeated import does, not with a failed insert. The test holds the earlier as a row of its own."""
    conversation_id = f"conv_twice{secrets.token_hex(6)}"
    payload = {
        "id": conversation_id,
        "user_id": "alice",
        "created_at": "2025-01-01T00:00:00+00:00",
        "items": [],
    }
    engine = create_engine(database_url, schema="llm_api", pool_size=2)
    try:
        async with (
            httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http,
            engine.connect() as holder,
            engine.connect() as observer,
        ):
            await holder.execute(
                text("INSERT INTO conversations (public_id, user_id, metadata) VALUES (:c, 'alice', '{}')"),
                {"c": conversation_id},
            )
            imported = asyncio.create_task(
                http.post(
                    "/internal/conversations/import",
                    json=payload,
                    headers={"X-Internal-Token": INTERNAL_TOKEN},
                )
            )
            await waiting_backends(observer, 1)  # the import's insert, behind the held one
            await holder.commit()
            repeated = await imported
    finally:
        await engine.dispose()
    assert repeated.status_code == 200, repeated.text
    assert repeated.json()["created"] is False


async def test_migration_keeps_the_rows_and_drops_the_link(database_url: str) -> None:
    url = await fresh_database(database_url)
    await asyncio.to_thread(upgrade, PACKAGE, url, "0002")
    engine = create_engine(url, schema="response_api", pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO conversations (id, user_id) VALUES ('conv_a', 'alice')")
            )
        await add_response(
            engine,
            "conv_a",
            "alice",
            status="completed",
            at="2025-01-01T00:00:00+00:00",
            inputs=[message("msg_1", "user", "hi")],
            output=[],
        )
        await asyncio.to_thread(upgrade, PACKAGE, url, "head")
        async with engine.connect() as connection:
            legacy = (await connection.execute(text("SELECT id, user_id FROM legacy_conversations"))).all()
            linked = await connection.scalar(text("SELECT conversation_id FROM responses"))
        assert [tuple(row) for row in legacy] == [("conv_a", "alice")] and linked == "conv_a"
        # responses.conversation_id now names llm-api's conversations: no foreign key to this schema.
        await add_response(
            engine,
            "conv_elsewhere",
            "alice",
            status="completed",
            at="2025-01-01T00:00:01+00:00",
            inputs=[],
            output=[],
        )
        await asyncio.to_thread(command.downgrade, alembic_config(PACKAGE, url), "0002")
        async with engine.connect() as connection:
            kept = (await connection.execute(text("SELECT id FROM conversations"))).scalars().all()
            links = (
                (await connection.execute(text("SELECT conversation_id FROM responses ORDER BY created_at")))
                .scalars()
                .all()
            )
        assert kept == ["conv_a"] and links == ["conv_a", None]
    finally:
        await engine.dispose()


async def fresh_database(database_url: str) -> str:
    """An empty database on the same server, for migrations that must start from an old revision."""
    name = f"jan_migration_{secrets.token_hex(4)}"
    admin = create_engine(database_url, schema="public", pool_size=1)
    try:
        async with admin.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(database_url).set(database=name).render_as_string(hide_password=False)


async def test_the_internal_conversation_routes_need_the_token_and_the_caller(
    peers: Peers, token: str, llm: AsyncOpenAI
) -> None:
    conversation = await llm.conversations.create()
    path = f"/internal/conversations/{conversation.id}/items"
    caller = {"Authorization": f"Bearer {token}"}
    internal = {"X-Internal-Token": INTERNAL_TOKEN}
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        assert (await http.get(path, headers=caller)).status_code == 403
        assert (await http.get(path, headers=internal)).status_code == 401
        assert (await http.get(path, headers={**caller, **internal})).json()["data"] == []
        bad = await http.post(
            path, json={"items": [{"type": "mcp_call", "name": 1}]}, headers={**caller, **internal}
        )
    assert bad.status_code == 400 and bad.json()["error"]["param"]
