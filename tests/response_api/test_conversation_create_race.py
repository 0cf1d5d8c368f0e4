"""A new conversation's create (`POST /internal/conversations/{id}/items?create=true`) and the
withdrawal of that id (`DELETE /internal/conversations/{id}?key=...`) in each order: both in flight
(queued on the id's lock, `ResponseWrites._serialise_create`, in the order the test chooses),
the create's append in flight when the withdrawal arrives, and a create sent without a key.
Whichever goes first, a withdrawn conversation does not stay, and one holding another append's
items is kept. The orders are forced with Postgres locks the test holds; nothing waits on time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from apps.common.db import async_url
from apps.response_api.services.conversations import new_conversation_id
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import Peers
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.response_api.test_conversation_withdraw import headers, message, waiting_backends


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database, for the locks the tests hold and what they read."""
    engine = create_async_engine(async_url(database_url))
    yield engine
    await engine.dispose()


@asynccontextmanager
async def connections(
    peers: Peers, engine: AsyncEngine
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncConnection, AsyncConnection]]:
    """A client of llm-api's internal routes, a connection holding what the test holds, and one
    watching who waits for it."""
    async with (
        httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http,
        engine.connect() as holder,
        engine.connect() as observer,
    ):
        yield http, holder, observer


def post_create(
    http: httpx.AsyncClient,
    issuer: TestIssuer,
    conversation: str,
    user: str,
    key: str | None,
    items: list[dict[str, Any]],
) -> Coroutine[Any, Any, httpx.Response]:
    """`user`'s create of `conversation` holding `items`, appended under `key` (`?create=true`)."""
    return http.post(
        f"/internal/conversations/{conversation}/items?create=true",
        json={"items": items},
        headers=headers(issuer, user, key),
    )


def post_withdrawal(
    http: httpx.AsyncClient, issuer: TestIssuer, conversation: str, key: str
) -> Coroutine[Any, Any, httpx.Response]:
    """Alice's withdrawal of `conversation`, made for the append `key`."""
    return http.delete(
        f"/internal/conversations/{conversation}", params={"key": key}, headers=headers(issuer, "alice")
    )


async def _user_id(http: httpx.AsyncClient, issuer: TestIssuer, engine: AsyncEngine, user: str) -> str:
    """The id llm-api files `user`'s conversations under (read from one it makes)."""
    probe = new_conversation_id()
    made = await post_create(http, issuer, probe, user, probe, [])
    assert made.status_code == 200, made.text
    async with engine.connect() as connection:
        found = await connection.execute(
            text("select user_id from llm_api.conversations where public_id = :c"), {"c": probe}
        )
        return str(found.scalar_one())


async def _create_and_withdrawal(
    peers: Peers,
    issuer: TestIssuer,
    engine: AsyncEngine,
    conversation: str,
    *,
    first: str,
    items: list[dict[str, Any]],
    create_key: str | None,
    withdraw_key: str,
) -> tuple[httpx.Response, httpx.Response]:
    """Alice's create of `conversation` (`?create=true` with `items`, under `create_key`) and its
    withdrawal (under `withdraw_key`), both queued on the id's lock (`_serialise_create`), which
    the test holds meanwhile, in the order `first` names; then the test lets go. The create's answer
    and the withdrawal's."""
    async with connections(peers, engine) as (http, holder, observer):
        user_id = await _user_id(http, issuer, engine, "alice")
        await holder.execute(
            text("select pg_advisory_xact_lock(hashtext(:u || '/' || :c))"),
            {"u": user_id, "c": conversation},
        )

        def create() -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(post_create(http, issuer, conversation, "alice", create_key, items))

        def withdraw() -> asyncio.Task[httpx.Response]:
            return asyncio.create_task(post_withdrawal(http, issuer, conversation, withdraw_key))

        # Postgres grants a lock to its waiters in the order they queued.
        ahead = create() if first == "create" else withdraw()
        await waiting_backends(observer, 1)
        behind = withdraw() if first == "create" else create()
        await waiting_backends(observer, 2)
        await holder.rollback()  # lets go of the id
        done_first, done_second = await ahead, await behind
    return (done_first, done_second) if first == "create" else (done_second, done_first)


@pytest.mark.parametrize("first", ["create", "withdrawal"])
@pytest.mark.parametrize("with_items", [False, True], ids=["empty", "items"])
async def test_a_create_and_a_withdrawal_of_its_id_both_in_flight_take_turns(
    peers: Peers, issuer: TestIssuer, engine: AsyncEngine, llm: AsyncOpenAI, first: str, with_items: bool
) -> None:
    """A new conversation's create (`?create=true`, its first delivery: with the response's items,
    or empty as a stream's early create) and its withdrawal arrive together. The test holds the id
    (the lock both take, `_serialise_create`) while the two queue behind it in the chosen order,
    then lets go: whichever goes first, the conversation does not stay, and its create (this one,
    or a later delivery of it) is refused once the withdrawal committed."""
    conversation = new_conversation_id()
    key = f"resp_turns_{first}_{with_items}"
    create_key = key if with_items else conversation  # an early create is keyed by the id itself
    items = [message(f"msg_turns_{first}_{with_items}", "user", "Q")] if with_items else []
    created, withdrawn = await _create_and_withdrawal(
        peers,
        issuer,
        engine,
        conversation,
        first=first,
        items=items,
        create_key=create_key,
        withdraw_key=key,
    )
    assert withdrawn.status_code == 204, withdrawn.text
    if first == "create":
        # Made with its items in one step, then withdrawn with them.
        assert created.status_code == 200, created.text
        assert len(created.json()["data"]) == len(items)
    else:
        assert created.status_code == 409, created.text
        assert created.json()["error"]["code"] == "append_withdrawn"
    with pytest.raises(openai.NotFoundError):
        await llm.conversations.retrieve(conversation)
    async with engine.connect() as connection:
        left = await connection.execute(
            text("select count(*) from llm_api.conversations where public_id = :c"), {"c": conversation}
        )
        assert left.scalar_one() == 0
    again = await http_retry(peers, issuer, conversation, create_key, items)
    assert again.status_code == 409 and again.json()["error"]["code"] == "append_withdrawn", again.text


async def http_retry(
    peers: Peers, issuer: TestIssuer, conversation: str, key: str, items: list[dict[str, Any]]
) -> httpx.Response:
    """A later delivery of the same create."""
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        return await post_create(http, issuer, conversation, "alice", key, items)


async def test_a_creates_append_in_flight_when_its_withdrawal_arrives_goes_with_the_conversation(
    peers: Peers, issuer: TestIssuer, engine: AsyncEngine, llm: AsyncOpenAI
) -> None:
    """The create has made the conversation and is appending its items (the conversation's row
    locked) when the withdrawal arrives: the withdrawal waits for it, then takes the conversation
    with those items. The test holds the append at its item's insert with an uncommitted item of
    the same id."""
    conversation = new_conversation_id()
    key, item_id = "resp_turns_append", "msg_turns_append"
    async with connections(peers, engine) as (http, holder, observer):
        probe = new_conversation_id()
        made = await post_create(http, issuer, probe, "alice", probe, [])
        assert made.status_code == 200, made.text
        await holder.execute(
            text(
                "insert into llm_api.conversation_items"
                " (public_id, conversation_id, sequence, type, role, status, body)"
                " select :item, id, 1, 'message', 'user', 'completed', '{}'"
                " from llm_api.conversations where public_id = :probe"
            ),
            {"item": item_id, "probe": probe},
        )
        created = asyncio.create_task(
            post_create(http, issuer, conversation, "alice", key, [message(item_id, "user", "Q")])
        )
        await waiting_backends(observer, 1)  # the append, its conversation made and locked
        withdrawal = asyncio.create_task(post_withdrawal(http, issuer, conversation, key))
        await waiting_backends(observer, 2)  # the withdrawal, behind the append's row lock
        await holder.rollback()
        appended, withdrawn = await created, await withdrawal
    assert appended.status_code == 200, appended.text
    assert [item["id"] for item in appended.json()["data"]] == [item_id]
    assert withdrawn.status_code == 204, withdrawn.text
    with pytest.raises(openai.NotFoundError):
        await llm.conversations.retrieve(conversation)


@pytest.mark.parametrize("first", ["create", "withdrawal"])
async def test_a_create_without_a_key_and_a_withdrawal_of_its_id_take_turns_too(
    peers: Peers, issuer: TestIssuer, engine: AsyncEngine, llm: AsyncOpenAI, first: str
) -> None:
    """A create sent without an `Idempotency-Key` (response-api always sends one; another internal
    caller may not) still holds the id against its withdrawal, and is refused once the id was
    withdrawn: the withdrawal's record says no delivery makes the conversation again."""
    conversation = new_conversation_id()
    created, withdrawn = await _create_and_withdrawal(
        peers,
        issuer,
        engine,
        conversation,
        first=first,
        items=[message(f"msg_keyless_{first}", "user", "Q")],
        create_key=None,
        withdraw_key="resp_keyless",
    )
    if first == "create":
        # Made with an item of no response's append: the withdrawal leaves it (409).
        assert created.status_code == 200, created.text
        assert withdrawn.status_code == 409, withdrawn.text
        assert (await llm.conversations.retrieve(conversation)).id == conversation
    else:
        assert withdrawn.status_code == 204, withdrawn.text
        assert created.status_code == 409 and created.json()["error"]["code"] == "append_withdrawn", (
            created.text
        )
        with pytest.raises(openai.NotFoundError):
            await llm.conversations.retrieve(conversation)


async def test_a_create_of_an_id_another_user_holds_is_a_conflict_and_of_ones_own_an_append(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI
) -> None:
    conversation = new_conversation_id()
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:

        async def create(user: str, key: str, item_id: str) -> httpx.Response:
            return await post_create(http, issuer, conversation, user, key, [message(item_id, "user", "Q")])

        made = await create("alice", "resp_own_1", "msg_own_1")
        assert made.status_code == 200, made.text
        taken = await create("mallory", "resp_taken", "msg_taken")
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict", taken.text
        again = await create("alice", "resp_own_2", "msg_own_2")
        assert again.status_code == 200, again.text
    listed = await llm.conversations.items.list(conversation)
    assert sorted(str(item.id) for item in listed.data) == ["msg_own_1", "msg_own_2"]


async def test_a_create_racing_another_users_create_of_the_same_id_is_a_conflict(
    peers: Peers, issuer: TestIssuer, engine: AsyncEngine, llm: AsyncOpenAI
) -> None:
    """Two users' creates of one id are not serialised by the id lock (it is per user): Alice's
    insert waits on the id's unique index behind Mallory's uncommitted one. When Mallory's commits,
    Alice's is refused as taken (the same answer as without the race) and stores nothing. The test
    holds Mallory's create as an uncommitted row of its own."""
    conversation = new_conversation_id()
    async with connections(peers, engine) as (http, holder, observer):
        mallory = await _user_id(http, issuer, engine, "mallory")
        await holder.execute(
            text(
                "insert into llm_api.conversations (public_id, user_id, metadata)"
                " values (:c, :u, '{}'::jsonb)"
            ),
            {"c": conversation, "u": mallory},
        )
        created = asyncio.create_task(
            post_create(
                http,
                issuer,
                conversation,
                "alice",
                "resp_race_alice",
                [message("msg_race_alice", "user", "Q")],
            )
        )
        await waiting_backends(observer, 1)  # Alice's insert, behind Mallory's uncommitted one
        await holder.commit()
        refused = await created
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict", refused.text
    assert "belongs to another user" in refused.json()["error"]["message"]  # as without the race
    with pytest.raises(openai.NotFoundError):  # Mallory's, not Alice's
        await llm.conversations.retrieve(conversation)
    async with engine.connect() as connection:
        stored = await connection.execute(
            text("select count(*) from llm_api.conversation_items where public_id = 'msg_race_alice'")
        )
        assert stored.scalar_one() == 0
