"""The turn store's statements against real Postgres: history as the model gets it, a batch's turns
numbered after a concurrent writer's items, and a turn on a deleted conversation left out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.db import HeldConnections, create_engine, driver_connection, session_factory
from apps.llm_api.chat_tables import ConversationRow
from apps.llm_api.services.conversations import ConversationStore, NewItem
from apps.llm_api.services.projects import ProjectStore
from apps.llm_api.services.turn_store import (
    TurnConversation,
    TurnRecord,
    conversation_with_history,
    write_turns,
)
from apps.llm_api.settings import LlmApiSettings
from tests.harness.llm_api import LlmApi
from tests.harness.waiting import eventually_async


@pytest.fixture
async def engine(llm_api: LlmApi, database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on llm-api's schema (the running `llm_api` fixture has migrated it)."""
    engine = create_engine(database_url, schema="llm_api")
    yield engine
    await engine.dispose()


def message(role: str, text: str) -> NewItem:
    part = "output_text" if role == "assistant" else "input_text"
    return NewItem({"type": "message", "role": role, "content": [{"type": part, "text": text}]})


def turn(conversation: ConversationRow, *texts: str) -> TurnRecord:
    return TurnRecord(conversation, [message("user", text) for text in texts], title=None)


async def sequences(engine: AsyncEngine, conversation: ConversationRow) -> list[tuple[int, str]]:
    store = ConversationStore(session_factory(engine))
    page = await store.list_items(conversation, limit=100, after=None, order="asc")
    assert page is not None
    return [(row.sequence, row.body["content"][0]["text"]) for row in page.rows]


async def test_history_is_the_last_completed_items_oldest_first(engine: AsyncEngine) -> None:
    store = ConversationStore(session_factory(engine))
    conversation = await store.create("turn-store-history", title="t")
    items = [message("user", f"q{n}") for n in range(4)]
    items.append(NewItem({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}))
    items.append(NewItem(message("assistant", "cut").body, status="incomplete"))
    await store.append_items(conversation, items)

    found = await conversation_with_history(engine, "turn-store-history", conversation.public_id, 3)
    assert found is not None
    row, history, instructions = found
    assert (row.id, row.public_id, row.title, row.metadata_) == (
        conversation.id,
        conversation.public_id,
        "t",
        {},
    )
    assert instructions is None
    assert history == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q2"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q3"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]
    empty = await store.create("turn-store-history")
    assert (await conversation_with_history(engine, "turn-store-history", empty.public_id, 3) or [0, 0])[
        1
    ] == []
    assert await conversation_with_history(engine, "someone-else", conversation.public_id, 3) is None


async def test_history_items_come_back_as_stored_whatever_their_text(engine: AsyncEngine) -> None:
    """The history document is spliced together as text: bodies with quotes, escapes and non-ASCII
    text, an item without a role and one with an empty body must all read back as written."""
    store = ConversationStore(session_factory(engine))
    conversation = await store.create("turn-store-text")
    tricky = 'a "quoted" \\ back\\slash, a tab\t, a newline\n, é, 😀, </script>, {"not": "json"}'
    bodies = [
        message("user", tricky).body,
        {"type": "function_call_output", "call_id": 'c"1', "output": tricky},
        {"type": "reasoning"},
        {"type": "message", "role": "assistant", "content": []},
    ]
    await store.append_items(conversation, [NewItem(body) for body in bodies])
    found = await conversation_with_history(engine, "turn-store-text", conversation.public_id, 10)
    assert found is not None
    assert found[1] == bodies


async def test_a_turn_waiting_for_a_concurrent_writer_is_numbered_after_its_items(
    engine: AsyncEngine, database_url: str
) -> None:
    """The turn's statement reads the last sequence in a snapshot taken before it waited for the
    conversation's lock; the writer holding it appends and commits meanwhile. Both keep their items,
    numbered one after the other."""
    store = ConversationStore(session_factory(engine))
    conversation = await store.create("turn-store-race")
    await store.append_items(conversation, [message("user", "first")])
    holder = await asyncpg.connect(database_url)
    try:
        await holder.execute("SET search_path TO llm_api")
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT id FROM conversations WHERE id = $1 FOR UPDATE", conversation.id)
        writing = asyncio.create_task(write_turns(engine, [turn(conversation, "turn a", "turn b")]))
        await _blocked_on_a_lock(holder, writing)
        await holder.execute(
            "INSERT INTO conversation_items (public_id, conversation_id, sequence, type, role, status, body)"
            " VALUES ('msg_concurrent', $1, 2, 'message', 'user', 'completed',"
            ' \'{"content": [{"type": "input_text", "text": "concurrent"}]}\')',
            conversation.id,
        )
        await transaction.commit()
        await writing
    finally:
        await holder.close()
    assert await sequences(engine, conversation) == [
        (1, "first"),
        (2, "concurrent"),
        (3, "turn a"),
        (4, "turn b"),
    ]


async def test_a_batch_numbers_each_conversation_and_skips_a_deleted_one(engine: AsyncEngine) -> None:
    store = ConversationStore(session_factory(engine))
    one = await store.create("turn-store-batch")
    other = await store.create("turn-store-batch")
    gone = await store.create("turn-store-batch")
    await store.append_items(other, [message("user", "earlier")])
    assert await store.delete("turn-store-batch", gone.public_id)
    draft = ConversationRow(public_id="conv_turnstorebatchdraft", user_id="turn-store-batch", metadata_={})
    await write_turns(
        engine,
        [turn(one, "1a"), turn(gone, "lost"), turn(other, "2a"), turn(one, "1b", "1c"), turn(draft, "new")],
    )
    assert await sequences(engine, one) == [(1, "1a"), (2, "1b"), (3, "1c")]
    assert await sequences(engine, other) == [(1, "earlier"), (2, "2a")]
    created = await store.get("turn-store-batch", draft.public_id)
    assert created is not None and await sequences(engine, created) == [(1, "new")]


async def test_a_batch_of_new_conversations_stores_every_field_as_given(engine: AsyncEngine) -> None:
    """Batches of only new conversations (the common case) take a shorter statement; what it stores
    must be what the general one stores: conversations with their title, metadata and project (one
    whose project was deleted starts detached), and items with every column, whatever their text."""
    user = "turn-store-new"
    store = ConversationStore(session_factory(engine))
    project = await ProjectStore(session_factory(engine)).create(
        user, name="p", instructions=None, metadata=None
    )
    tricky = 'a "quoted" \\ back\\slash, a tab\t, é, 😀, </script>, {"not": "json"}'
    reply = NewItem(
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": tricky}]},
        status="incomplete",
        finish_reason="length",
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        incomplete_details={"reason": "client_disconnected"},
    )
    plain = ConversationRow(public_id="conv_turnstorenewplain", user_id=user, metadata_={"k": "v é"})
    titled = ConversationRow(public_id="conv_turnstorenewtitled", user_id=user, title="Mine", metadata_={})
    in_project = ConversationRow(
        public_id="conv_turnstorenewproject", user_id=user, metadata_={}, project_id=project.public_id
    )
    orphan = ConversationRow(
        public_id="conv_turnstoreneworphan", user_id=user, metadata_={}, project_id="proj_gone"
    )
    for batch in (
        [TurnRecord(plain, [message("user", tricky), reply], title="Asked"), turn(titled, "hello")],
        [turn(in_project, "in a project"), turn(orphan, "detached")],
    ):
        await write_turns(engine, batch)
    first = await store.get(user, plain.public_id)
    assert first is not None and (first.title, first.metadata_, first.project_id) == (
        "Asked",
        {"k": "v é"},
        None,
    )
    second = await store.get(user, titled.public_id)
    assert second is not None and second.title == "Mine"
    third = await store.get(user, in_project.public_id)
    assert third is not None and third.project_id == project.public_id
    fourth = await store.get(user, orphan.public_id)
    assert fourth is not None and fourth.project_id is None
    page = await store.list_items(first, limit=10, after=None, order="asc")
    assert page is not None
    rows = [
        (r.sequence, r.type, r.role, r.status, r.body, r.finish_reason, r.usage, r.incomplete_details)
        for r in page.rows
    ]
    assert rows == [
        (
            1,
            "message",
            "user",
            "completed",
            {"content": [{"type": "input_text", "text": tricky}]},
            None,
            None,
            None,
        ),
        (
            2,
            "message",
            "assistant",
            "incomplete",
            {"content": [{"type": "output_text", "text": tricky}]},
            "length",
            reply.usage,
            reply.incomplete_details,
        ),
    ]
    assert [r.public_id for r in page.rows][1] == reply.public_id


async def test_an_absent_usage_is_stored_as_json_null_by_both_statements(engine: AsyncEngine) -> None:
    """Items written by `store.create` (the ORM) keep a missing usage as JSON `null`; the turn
    statements read their items with `json_to_recordset`, which makes a JSON null SQL NULL, so they
    must turn it back: one stored form, whichever path wrote the item."""
    user = "turn-store-nulls"
    store = ConversationStore(session_factory(engine))
    continued = await store.create(user, items=[message("user", "by the orm")])
    fresh = ConversationRow(public_id="conv_turnstorenulls", user_id=user, metadata_={})
    await write_turns(engine, [turn(fresh, "new")])  # only new conversations: the short statement
    await write_turns(engine, [turn(continued, "continued")])  # the general statement
    async with driver_connection(engine) as connection:
        forms = await connection.fetch(
            "SELECT jsonb_typeof(i.usage) AS usage, jsonb_typeof(i.incomplete_details) AS details "
            "FROM conversation_items i JOIN conversations c ON c.id = i.conversation_id "
            "WHERE c.user_id = $1 ORDER BY c.id, i.sequence",
            user,
        )
    assert [(row["usage"], row["details"]) for row in forms] == [("null", "null")] * 3


async def _blocked_on_a_lock(holder: asyncpg.Connection, writing: asyncio.Task[None]) -> None:
    """Until another session waits for a lock (the turn's statement, on the held conversation)."""
    for _ in range(600):
        assert not writing.done(), writing
        waiting = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the turn's statement never waited for the conversation's lock")


async def test_llm_api_connections_plan_statements_once(database_url: str) -> None:
    """llm-api's engine asks Postgres for generic plans (its turn statements would otherwise be
    planned on every execution); an engine without the setting keeps the server's."""
    settings = LlmApiSettings(database_url=database_url)
    assert settings.db_plan_cache_mode == "force_generic_plan"
    for mode, expected in ((settings.db_plan_cache_mode, "force_generic_plan"), (None, "auto")):
        engine = create_engine(database_url, schema="llm_api", plan_cache_mode=mode)
        try:
            async with driver_connection(engine) as connection:
                assert await connection.fetchval("SHOW plan_cache_mode") == expected
        finally:
            await engine.dispose()


async def test_held_connections_are_reused_and_one_the_server_closed_is_replaced(
    engine: AsyncEngine,
) -> None:
    """A store with held connections checks one out for its first statement and keeps it: later
    history reads and batches take nothing from the pool. One the server closed while it was held
    is dropped, and the next batch commits on a fresh one; `release_connections` gives all back."""
    user = "turn-store-held"
    store = ConversationStore(session_factory(engine), held_connections=2)
    checkouts: list[object] = []
    event.listen(engine.sync_engine, "checkout", lambda *args: checkouts.append(args[0]))
    conversation = await store.create(user)
    checkouts.clear()
    for n in range(3):
        await store.record_turns([turn(conversation, f"kept {n}")])
        found = await store.conversation_with_history(user, conversation.public_id, 10)
        assert found is not None
        assert len(found[1]) == n + 1
    assert len(checkouts) == 1
    assert engine.sync_engine.pool.checkedout() == 1  # type: ignore[attr-defined]

    async with driver_connection(engine) as admin:
        await admin.execute("SELECT pg_terminate_backend($1)", _held(store)[0].get_server_pid())
    await eventually_async(lambda: _held_closed(store), "asyncpg saw the server close the held connection")
    checkouts.clear()
    await store.record_turns([turn(conversation, "after the server closed it")])
    assert len(checkouts) == 1
    assert [text for _, text in await sequences(engine, conversation)] == [
        "kept 0",
        "kept 1",
        "kept 2",
        "after the server closed it",
    ]
    store.release_connections()
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_statement_still_running_when_the_held_connections_are_released_gives_its_back(
    engine: AsyncEngine,
) -> None:
    """Shutdown releases the held connections before the engine is disposed; a statement in flight
    then must not keep its connection afterwards, or it would be left checked out."""
    held = HeldConnections(engine, keep=2)
    async with held.connection() as connection:
        held.release()
        await connection.execute("SELECT 1")
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with held.connection():  # a late one still works, and is not kept either
        pass
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_held_connection_a_statement_failed_on_is_not_kept(engine: AsyncEngine) -> None:
    """As with `driver_connection`: after the server refused a statement, the connection goes back to
    the pool (idle, not held); after a cancellation mid-statement, or the server closing it, it is
    discarded. Each time the caller gets the error itself, and the next statement runs on a fresh
    connection, which is held again."""
    held = HeldConnections(engine, keep=2)
    pool = engine.sync_engine.pool
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with held.connection() as connection:
            await connection.execute("SELECT 1 / 0")
    assert held._idle == []
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not connection.is_closed()  # back in the pool, usable

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), held.connection() as connection:
            await connection.execute("SELECT pg_sleep(30)")
    assert held._idle == []
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert connection.is_closed()  # terminated: its statement may still be running

    async def lose(victim: asyncpg.Connection) -> None:
        async with driver_connection(engine) as admin:
            await eventually_async(
                lambda: _running_sleep(admin, victim.get_server_pid()), "the sleep started"
            )
            await admin.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())

    # asyncpg reports the server's own message (terminating connection), or the closed socket.
    with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
        async with held.connection() as connection:
            killer = asyncio.create_task(lose(connection))
            try:
                await connection.execute("SELECT pg_sleep(30)")
            finally:  # its own pool connection is back before the pool is counted
                await killer
    assert held._idle == []
    assert pool.checkedout() == 0  # type: ignore[attr-defined]

    async with held.connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1
    assert len(held._idle) == 1
    held.release()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def _running_sleep(admin: asyncpg.Connection, pid: int) -> bool:
    query = "SELECT query FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
    return "pg_sleep" in str(await admin.fetchval(query, pid))


def _held(store: ConversationStore) -> list[asyncpg.Connection]:
    held = store._held  # the test reads which connections are kept
    assert held is not None
    return [pooled.driver_connection for pooled, _ in held._idle]


def _held_closed(store: ConversationStore) -> bool:
    return all(connection.is_closed() for connection in _held(store))


def test_the_turn_paths_conversation_record_has_every_column_of_the_row() -> None:
    """The history read returns a plain record, and the internal routes get it back as a row: a
    column added to `conversations` must be added to the record too, or it would be lost between."""
    columns = {attribute.key for attribute in ConversationRow.__mapper__.column_attrs}
    assert set(TurnConversation.__slots__) == columns
    record = TurnConversation(7, "conv_x", "u", "t", {"k": "v"}, "proj_1")
    row = record.as_row()
    assert {key: getattr(row, key) for key in columns} == {key: getattr(record, key) for key in columns}
    assert TurnConversation.of(row) == record
