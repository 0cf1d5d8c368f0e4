"""llm-api's `DELETE /internal/conversations/{id}?key=...`: response-api withdraws a new conversation
it made for a response that was then not stored (the client got an error and never learned its id).

Only a conversation holding nothing but that response's append (or nothing at all) goes; one with
anything else in it stays (409); a missing one, or another user's, is already withdrawn (204). The
check and the delete are one step: an item another writer appends meanwhile is never deleted with it.

`DELETE .../{id}/items?key=...` withdraws only that response's items from a conversation that stays.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from apps.common.db import async_url
from apps.common.errors import APIError
from apps.common.http import make_session
from apps.response_api.services.conversations import Conversations, LlmApiAway, new_conversation_id
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import INTERNAL_TOKEN, Peers
from tests.harness.waiting import CLIENT_TIMEOUT


def headers(issuer: TestIssuer, user: str, key: str | None = None) -> dict[str, str]:
    sent = {"Authorization": f"Bearer {issuer.mint(user)}", "X-Internal-Token": INTERNAL_TOKEN}
    return sent | ({"Idempotency-Key": key} if key else {})


def message(item_id: str, role: str, text: str) -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"id": item_id, "type": "message", "role": role, "content": [{"type": kind, "text": text}]}


async def test_a_withdrawn_conversation_goes_only_with_nothing_but_its_response_in_it(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI, other_llm: AsyncOpenAI
) -> None:
    empty, answered, extended = (new_conversation_id() for _ in range(3))
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:

        async def make(conversation: str, key: str, items: list[dict[str, Any]]) -> None:
            made = await http.post(
                f"/internal/conversations/{conversation}/items?create=true",
                json={"items": items},
                headers=headers(issuer, "alice", key),
            )
            assert made.status_code == 200, made.text

        async def withdraw(conversation: str, key: str, user: str = "alice") -> httpx.Response:
            return await http.delete(
                f"/internal/conversations/{conversation}", params={"key": key}, headers=headers(issuer, user)
            )

        await make(empty, empty, [])
        answer = [message("msg_wq1", "user", "Q"), message("msg_wa1", "assistant", "A")]
        await make(answered, "resp_withdraw1", answer)
        await make(extended, "resp_withdraw2", [message("msg_wq2", "user", "Q")])
        await make(extended, "resp_withdraw3", [message("msg_wq3", "user", "Q again")])

        by_other = await withdraw(answered, "resp_withdraw1", user="mallory")
        assert by_other.status_code == 204  # not theirs: nothing of theirs to withdraw
        assert (await llm.conversations.retrieve(answered)).id == answered

        assert (await withdraw(empty, "resp_any")).status_code == 204
        assert (await withdraw(answered, "resp_withdraw1")).status_code == 204
        kept = await withdraw(extended, "resp_withdraw2")
        assert kept.status_code == 409 and kept.json()["error"]["code"] == "conflict", kept.text
        again = await withdraw(answered, "resp_withdraw1")
        assert again.status_code == 204  # idempotent: a retry after a lost answer
        unauthenticated = await http.delete(
            f"/internal/conversations/{extended}",
            params={"key": "resp_withdraw2"},
            headers={"Authorization": f"Bearer {issuer.mint('alice')}"},
        )
        assert unauthenticated.status_code == 403
        no_key = await http.delete(f"/internal/conversations/{extended}", headers=headers(issuer, "alice"))
        assert no_key.status_code == 400

    for gone in (empty, answered):
        with pytest.raises(openai.NotFoundError):
            await llm.conversations.retrieve(gone)
    assert (await llm.conversations.retrieve(extended)).id == extended
    with pytest.raises(openai.NotFoundError):
        await other_llm.conversations.retrieve(extended)


async def blocked_by(connection: AsyncConnection, pid: int) -> None:
    """Until some backend waits for a lock that backend `pid` holds."""
    query = text("select count(*) from pg_stat_activity where :pid = any(pg_blocking_pids(pid))")
    for _ in range(1500):
        if (await connection.execute(query, {"pid": pid})).scalar_one():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the withdrawal never waited for the other writer")


async def test_an_item_appended_while_a_conversation_is_withdrawn_keeps_it(
    peers: Peers, issuer: TestIssuer, database_url: str, llm: AsyncOpenAI
) -> None:
    conversation = new_conversation_id()
    engine = create_async_engine(async_url(database_url))
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        made = await http.post(
            f"/internal/conversations/{conversation}/items?create=true",
            json={"items": [message("msg_wrq", "user", "Q")]},
            headers=headers(issuer, "alice", "resp_withdraw_race"),
        )
        assert made.status_code == 200, made.text
        try:
            async with engine.connect() as writer, engine.connect() as observer:
                # Another writer appends, as llm-api's writers do (the conversation's row lock, then
                # the item), and has not committed when the withdrawal arrives.
                pid = (await writer.execute(text("select pg_backend_pid()"))).scalar_one()
                owner = await writer.execute(
                    text("select id from llm_api.conversations where public_id = :c for update"),
                    {"c": conversation},
                )
                await writer.execute(
                    text(
                        "insert into llm_api.conversation_items"
                        " (public_id, conversation_id, sequence, type, role, status, body)"
                        " values ('msg_wr_other', :id, 2, 'message', 'user', 'completed', '{}')"
                    ),
                    {"id": owner.scalar_one()},
                )
                withdrawal = asyncio.create_task(
                    http.delete(
                        f"/internal/conversations/{conversation}",
                        params={"key": "resp_withdraw_race"},
                        headers=headers(issuer, "alice"),
                    )
                )
                await blocked_by(observer, pid)
                await writer.commit()
                withdrawn = await withdrawal
        finally:
            await engine.dispose()
    assert withdrawn.status_code == 409, withdrawn.text
    items = await llm.conversations.items.list(conversation, order="asc")
    assert [item.id for item in items.data] == ["msg_wrq", "msg_wr_other"]


async def waiting_backends(connection: AsyncConnection, count: int) -> None:
    """Until `count` backends wait for a lock."""
    query = text("select count(*) from pg_stat_activity where cardinality(pg_blocking_pids(pid)) > 0")
    for _ in range(1500):
        found = (await connection.execute(query)).scalar_one()
        await connection.rollback()  # pg_stat_activity is read once per transaction
        if found >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {count} backends waiting")


async def test_a_new_conversation_created_while_it_is_withdrawn_does_not_stay(
    peers: Peers, issuer: TestIssuer, database_url: str, llm: AsyncOpenAI
) -> None:
    """The withdrawal found no conversation yet (its first delivery is late) and has not committed
    its record when that delivery (`?create=true`) arrives: the delivery must not make it. The test
    holds the withdrawal there by locking an expired record, which each withdrawal deletes."""
    conversation = new_conversation_id()
    key = "resp_create_race"
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as setup:
            await setup.execute(
                text(
                    "insert into llm_api.withdrawn_appends"
                    " (user_id, conversation_id, append_key, withdrawn_at)"
                    " values ('nobody', :c, '', now() - interval '2 days')"
                ),
                {"c": new_conversation_id()},
            )
        async with (
            httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http,
            engine.connect() as holder,
            engine.connect() as observer,
        ):
            await holder.execute(
                text("select 1 from llm_api.withdrawn_appends where user_id = 'nobody' for update")
            )
            withdrawal = asyncio.create_task(
                http.delete(
                    f"/internal/conversations/{conversation}",
                    params={"key": key},
                    headers=headers(issuer, "alice"),
                )
            )
            await waiting_backends(observer, 1)  # the withdrawal, past its lookup, at the record
            creating = asyncio.create_task(
                http.post(
                    f"/internal/conversations/{conversation}/items?create=true",
                    json={"items": [message("msg_crq", "user", "Q")]},
                    headers=headers(issuer, "alice", key),
                )
            )
            both_waiting = asyncio.create_task(waiting_backends(observer, 2))
            await asyncio.wait((creating, both_waiting), return_when=asyncio.FIRST_COMPLETED)
            await holder.commit()
            withdrawn, created = await withdrawal, await creating
            both_waiting.cancel()
    finally:
        await engine.dispose()
    assert withdrawn.status_code == 204, withdrawn.text
    assert created.status_code == 409, created.text  # the delivery of a withdrawn append stores nothing
    with pytest.raises(openai.NotFoundError):
        await llm.conversations.retrieve(conversation)


async def test_a_responses_items_are_withdrawn_only_from_its_callers_conversation_and_only_its_own(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI
) -> None:
    conversation = new_conversation_id()
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        for key, appended in (
            ("resp_items1", [message("msg_wi1q", "user", "Q"), message("msg_wi1a", "assistant", "A")]),
            ("resp_items2", [message("msg_wi2q", "user", "Q2"), message("msg_wi2a", "assistant", "A2")]),
        ):
            made = await http.post(
                f"/internal/conversations/{conversation}/items?create=true",
                json={"items": appended},
                headers=headers(issuer, "alice", key),
            )
            assert made.status_code == 200, made.text

        async def withdraw(key: str, user: str = "alice") -> int:
            path = f"/internal/conversations/{conversation}/items"
            answered = await http.delete(path, params={"key": key}, headers=headers(issuer, user))
            return answered.status_code

        assert await withdraw("resp_items1", user="mallory") == 204  # not theirs: nothing happens
        assert await withdraw("resp_items2") == 204
        assert await withdraw("resp_items2") == 204  # idempotent: a retry after a lost answer
        assert await withdraw("resp_none") == 204
        missing = f"/internal/conversations/{new_conversation_id()}/items"
        assert (
            await http.delete(missing, params={"key": "resp_items1"}, headers=headers(issuer, "alice"))
        ).status_code == 204
        no_key = await http.delete(
            f"/internal/conversations/{conversation}/items", headers=headers(issuer, "alice")
        )
        assert no_key.status_code == 400
    items = await llm.conversations.items.list(conversation, order="asc")
    assert [item.id for item in items.data] == ["msg_wi1q", "msg_wi1a"]


async def test_withdrawing_needs_the_internal_token_not_only_the_users_credentials(
    peers: Peers, issuer: TestIssuer
) -> None:
    # A user's own bearer opens neither withdrawal: only response-api, which knows what it stored.
    conversation = new_conversation_id()
    key = "resp_tokenless"
    user_only = {"Authorization": f"Bearer {issuer.mint('alice')}"}
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        made = await http.post(
            f"/internal/conversations/{conversation}/items?create=true",
            json={"items": [message("msg_wtq", "user", "Q")]},
            headers=headers(issuer, "alice", key),
        )
        assert made.status_code == 200, made.text
        for path in (
            f"/internal/conversations/{conversation}",
            f"/internal/conversations/{conversation}/items",
        ):
            refused = await http.delete(path, params={"key": key}, headers=user_only)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "forbidden"  # the OpenAI envelope
        kept = await http.get(
            f"/internal/conversations/{conversation}/items", headers=headers(issuer, "alice")
        )
    assert kept.status_code == 200, kept.text
    assert [item["id"] for item in kept.json()["data"]] == ["msg_wtq"]


async def test_an_append_arriving_after_its_withdrawal_is_refused(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI
) -> None:
    """A delivery of an append still in flight when response-api withdrew it (its items from a named
    conversation, or the new conversation it made) lands afterwards: it must not put them back."""
    named, new, never = (new_conversation_id() for _ in range(3))
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:

        async def append(conversation: str, key: str, item_id: str, create: bool = True) -> httpx.Response:
            return await http.post(
                f"/internal/conversations/{conversation}/items" + ("?create=true" if create else ""),
                json={"items": [message(item_id, "user", "Q")]},
                headers=headers(issuer, "alice", key),
            )

        assert (await append(named, "resp_late_kept", "msg_late_kept")).status_code == 200
        assert (await append(named, "resp_late1", "msg_late1")).status_code == 200
        withdrawn = await http.delete(
            f"/internal/conversations/{named}/items",
            params={"key": "resp_late1"},
            headers=headers(issuer, "alice"),
        )
        assert withdrawn.status_code == 204
        late = await append(named, "resp_late1", "msg_late1", create=False)
        assert late.status_code == 409 and late.json()["error"]["code"] == "append_withdrawn", late.text
        assert (await append(named, "resp_late2", "msg_late2", create=False)).status_code == 200

        assert (await append(new, "resp_late3", "msg_late3")).status_code == 200
        gone = await http.delete(
            f"/internal/conversations/{new}", params={"key": "resp_late3"}, headers=headers(issuer, "alice")
        )
        assert gone.status_code == 204
        late_create = await append(new, "resp_late3", "msg_late3")
        assert late_create.status_code == 409 and late_create.json()["error"]["code"] == "append_withdrawn"
        # Nor does a late delivery of the empty create a stream or background response starts with
        # (keyed by the conversation's own id): a withdrawn conversation is never made again.
        early_create = await http.post(
            f"/internal/conversations/{new}/items?create=true",
            json={"items": []},
            headers=headers(issuer, "alice", new),
        )
        assert early_create.status_code == 409, early_create.text

        # Withdrawn before its first delivery arrived at all: that delivery is refused too.
        early = await http.delete(
            f"/internal/conversations/{never}", params={"key": "resp_late4"}, headers=headers(issuer, "alice")
        )
        assert early.status_code == 204
        assert (await append(never, "resp_late4", "msg_late4")).status_code == 409
        # Another user's withdrawal under that key withdraws nothing of alice's.
        mallory = await http.delete(
            f"/internal/conversations/{named}/items",
            params={"key": "resp_late2"},
            headers=headers(issuer, "mallory"),
        )
        assert mallory.status_code == 204
    items = await llm.conversations.items.list(named, order="asc")
    assert [item.id for item in items.data] == ["msg_late_kept", "msg_late2"]
    for missing in (new, never):
        with pytest.raises(openai.NotFoundError):
            await llm.conversations.retrieve(missing)


async def test_withdrawn_keys_are_forgotten_once_no_delivery_can_still_arrive(
    peers: Peers, issuer: TestIssuer, database_url: str
) -> None:
    """A withdrawal record is needed only while a delivery may be in flight; older ones are removed
    by the next withdrawal, so the records stay bounded."""
    engine = create_async_engine(async_url(database_url))
    conversation = new_conversation_id()
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "insert into llm_api.withdrawn_appends"
                    " (user_id, conversation_id, append_key, withdrawn_at)"
                    " values ('alice', :c, 'resp_expired', now() - interval '2 days')"
                ),
                {"c": conversation},
            )
        async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
            withdrawn = await http.delete(
                f"/internal/conversations/{conversation}/items",
                params={"key": "resp_fresh"},
                headers=headers(issuer, "alice"),
            )
            assert withdrawn.status_code == 204
        async with engine.connect() as connection:
            kept = await connection.execute(
                text("select append_key from llm_api.withdrawn_appends where conversation_id = :c"),
                {"c": conversation},
            )
            assert [row[0] for row in kept] == ["resp_fresh"]
    finally:
        await engine.dispose()


async def test_response_api_reads_a_refused_late_append_as_a_failed_store(
    peers: Peers, issuer: TestIssuer
) -> None:
    """The refusal is not the caller's conflict (a 409 they could act on) nor worth retrying: the
    append failed, as when llm-api is away, and is not tried again."""
    conversation = new_conversation_id()
    user = {"Authorization": f"Bearer {issuer.mint('alice')}"}
    async with make_session(read_timeout=None) as session:
        conversations = Conversations(session, peers.llm_api_url, INTERNAL_TOKEN)
        await conversations.withdraw(conversation, user, key="resp_refused_late")
        with pytest.raises(APIError) as refused:
            await conversations.append(
                conversation,
                [message("msg_rl", "user", "Q")],
                user,
                key="resp_refused_late",
                budget=60,
                create=True,
            )
    assert refused.value.status_code == 503 and refused.value.code == "conversations_unavailable"
    assert not isinstance(refused.value, LlmApiAway)
