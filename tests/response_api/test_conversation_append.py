"""A response's items reach its conversation exactly once, through an llm-api outage and lost answers.

response-api appends a stored response's items to its conversation in llm-api before acknowledging
the response. Here a TCP proxy stands between the real response-api and the real llm-api and cuts
that append at the socket: *refused* (the connection closes before llm-api sees the request: llm-api
is away) or *dropped* (llm-api stores the items, and its answer is lost with the connection). The
client's outcome is read off the wire; the conversation is read back through llm-api's public API.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from apps.response_api.services.conversations import new_conversation_id
from tests.harness.fault_proxy import FaultProxy, fault_proxy
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import INTERNAL_TOKEN, MODEL, Peers, ServerFactory
from tests.harness.responses import Outcome, assert_none_acknowledged_and_lost, create, poll
from tests.harness.upstream import FakeUpstream
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.harness.waiting import eventually_async as eventually
from tests.response_api.scripts import answer
from tests.response_api.test_conversation_early import http_client
from tests.response_api.test_ending_overlap import conversations_of


@pytest.fixture
def proxy(peers: Peers) -> Iterator[FaultProxy]:
    """llm-api behind a proxy that can fault `POST /internal/conversations/{id}/items`."""
    with fault_proxy(peers.llm_api_url, "POST", "/internal/conversations/", "/items") as running:
        yield running


async def run_all(
    http: httpx.AsyncClient, upstream: FakeUpstream, conversation: str, kinds: list[str]
) -> tuple[list[Outcome], list[asyncio.Task[Outcome]]]:
    upstream.enqueue(*(answer(f"Answer {n}.") for n in range(len(kinds))))
    outcomes = [Outcome(kind) for kind in kinds]
    body = {"model": MODEL, "input": "Count on me.", "tools": [], "conversation": conversation}
    tasks = [asyncio.create_task(create(http, outcome, body)) for outcome in outcomes]
    return outcomes, tasks


async def settle(
    http: httpx.AsyncClient, outcomes: list[Outcome], tasks: list[asyncio.Task[Outcome]]
) -> None:
    await asyncio.gather(*tasks)
    for outcome in outcomes:
        if outcome.kind == "background":
            await poll(http, outcome)


async def item_ids(llm: AsyncOpenAI, conversation: str) -> Counter[str]:
    page = await llm.conversations.items.list(conversation, order="asc", limit=100)
    assert not page.has_more
    return Counter(str(item.id) for item in page.data)


def assert_stored_once(outcomes: list[Outcome], stored: Counter[str]) -> None:
    """Each acknowledged response's items are in the conversation once; nothing else is."""
    acknowledged = [o for o in outcomes if o.acknowledged and o.status == "completed"]
    expected = Counter(item for o in acknowledged for item in o.output_ids)
    assert all(count == 1 for count in stored.values()), stored
    assert expected.keys() <= stored.keys(), (expected, stored)
    assert len(stored) == 2 * len(acknowledged)  # each response: its input message and its answer


def client(url: str, issuer: TestIssuer) -> httpx.AsyncClient:
    token = issuer.mint("alice")
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=90)


async def test_appends_are_retried_through_a_short_llm_api_outage(
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    conversation = (await llm.conversations.create()).id
    kinds = ["plain", "plain", "stream", "stream", "background", "background"]
    proxy.refusing = True
    with response_api_server(llm_api_url=proxy.url, storage_retry_seconds=60) as url:
        async with client(url, issuer) as http:
            outcomes, tasks = await run_all(http, upstream, conversation, kinds)
            # Every response has had its append refused at least twice, and is still waiting.
            await eventually(lambda: proxy.refused >= 2 * len(kinds), "every append was retried")
            assert not any(
                task.done() for task, o in zip(tasks, outcomes, strict=True) if o.kind != "background"
            )
            assert not any(o.acknowledged for o in outcomes)
            proxy.refusing = False
            await settle(http, outcomes, tasks)
            assert all(o.acknowledged and o.status == "completed" for o in outcomes), outcomes
            await assert_none_acknowledged_and_lost(http, outcomes)
    assert_stored_once(outcomes, await item_ids(llm, conversation))


async def test_an_outage_past_the_budget_is_reported_and_stores_nothing(
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    conversation = (await llm.conversations.create()).id
    proxy.refusing = True
    budgets = {"storage_retry_seconds": 0.5, "background_storage_retry_seconds": 0.5}
    with response_api_server(llm_api_url=proxy.url, **budgets) as url:
        async with client(url, issuer) as http:
            kinds = ["plain", "stream", "background"]
            outcomes, tasks = await run_all(http, upstream, conversation, kinds)
            await settle(http, outcomes, tasks)
            plain, stream, background = outcomes
            assert plain.http_status == 503 and plain.retry_after, plain
            assert stream.http_status == 200 and stream.text.startswith("Answer "), stream  # content first
            for outcome in (plain, stream):
                assert not outcome.acknowledged and outcome.error is not None, outcome
                assert outcome.error["code"] == "storage_unavailable", outcome
            # Nobody waits for a background response: whoever polls it reads that it failed.
            assert background.status == "failed" and background.response_error is not None, background
            assert background.response_error["code"] == "conversation_unavailable", background
            assert proxy.refused > 2
            await assert_none_acknowledged_and_lost(http, outcomes)
    assert await item_ids(llm, conversation) == Counter()


async def test_a_background_append_that_landed_past_its_budget_is_withdrawn(
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    """Every answer of llm-api to the append is lost, so the background response fails
    (`conversation_unavailable`) although its items landed: they are then taken back out."""
    conversation = (await llm.conversations.create()).id
    proxy.answers_to_drop = 10**6
    with response_api_server(llm_api_url=proxy.url, background_storage_retry_seconds=0.5) as url:
        async with client(url, issuer) as http:
            outcomes, tasks = await run_all(http, upstream, conversation, ["background"])
            await settle(http, outcomes, tasks)
            [background] = outcomes
            assert background.status == "failed" and background.response_error is not None, background
            assert background.response_error["code"] == "conversation_unavailable", background
            assert proxy.dropped >= 1
            await eventually(lambda: _is_empty(llm, conversation), "the items were withdrawn")  # nobody waits
            assert background.id is not None
            late = await http.get(f"/v1/responses/{background.id}")
            assert late.json()["status"] == "failed"


@pytest.mark.parametrize("kind", ["plain", "stream"])
async def test_a_foreground_append_that_landed_past_its_budget_is_withdrawn(
    kind: str,
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    """Every answer of llm-api to the append is lost: the client is told the response failed (a 503,
    or the stream's error), so the items that landed are taken back out of its conversation."""
    conversation = (await llm.conversations.create()).id
    proxy.answers_to_drop = 10**6
    with response_api_server(llm_api_url=proxy.url, storage_retry_seconds=0.5) as url:
        async with client(url, issuer) as http:
            outcomes, tasks = await run_all(http, upstream, conversation, [kind])
            await settle(http, outcomes, tasks)
            [outcome] = outcomes
            assert not outcome.acknowledged and outcome.error is not None, outcome
            assert outcome.error["code"] == "storage_unavailable", outcome
            assert proxy.dropped >= 1
            await eventually(lambda: _is_empty(llm, conversation), "the items were withdrawn")


async def test_a_new_conversation_whose_append_landed_past_its_budget_is_withdrawn_whole(
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    peers: Peers,
    upstream: FakeUpstream,
) -> None:
    """A plain response's new conversation is made by its append: that landed, its answers were lost,
    and the client got a 503, so it never learned the id. Nothing of it stays, not even empty."""
    user = "new-conversation-dropped"
    proxy.answers_to_drop = 10**6
    upstream.enqueue(answer("Not kept."))
    with response_api_server(llm_api_url=proxy.url, storage_retry_seconds=0.5) as url:
        async with http_client(url, issuer, user) as http:
            answered = await http.post("/v1/responses", json={"model": MODEL, "input": "Hi.", "tools": []})
            assert answered.status_code == 503, answered.text
            assert proxy.dropped >= 1

            async def none_left() -> bool:
                return await conversations_of(peers, issuer, user) == []

            await eventually(none_left, "the new conversation was withdrawn")


async def _is_empty(llm: AsyncOpenAI, conversation: str) -> bool:
    return await item_ids(llm, conversation) == Counter()


async def test_an_append_whose_answer_was_lost_is_stored_once(
    proxy: FaultProxy,
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    conversation = (await llm.conversations.create()).id
    kinds = ["plain", "stream", "background"]
    proxy.answers_to_drop = len(kinds)  # llm-api stores each append; response-api never hears so
    with response_api_server(llm_api_url=proxy.url) as url:
        async with client(url, issuer) as http:
            outcomes, tasks = await run_all(http, upstream, conversation, kinds)
            await settle(http, outcomes, tasks)
            assert all(o.acknowledged and o.status == "completed" for o in outcomes), outcomes
            await assert_none_acknowledged_and_lost(http, outcomes)
    assert proxy.dropped == len(kinds)
    assert_stored_once(outcomes, await item_ids(llm, conversation))


async def test_llm_api_stores_a_repeated_append_once(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI
) -> None:
    conversation = (await llm.conversations.create()).id
    items: list[dict[str, Any]] = [
        {
            "id": "msg_twiceq1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Q"}],
        },
        {
            "id": "msg_twicea1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "A"}],
        },
    ]
    headers = {
        "Authorization": f"Bearer {issuer.mint('alice')}",
        "X-Internal-Token": INTERNAL_TOKEN,
        "Idempotency-Key": "resp_twice1",
    }
    path = f"/internal/conversations/{conversation}/items"
    async with httpx.AsyncClient(base_url=peers.llm_api_url, headers=headers, timeout=CLIENT_TIMEOUT) as http:
        answers = [await http.post(path, json={"items": items}) for _ in range(3)]
        other_key = await http.post(
            path, json={"items": items[:1]}, headers={"Idempotency-Key": "resp_other"}
        )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert len({tuple(i["id"] for i in a.json()["data"]) for a in answers}) == 1  # the same items each time
    assert [i["id"] for i in answers[0].json()["data"]] == ["msg_twiceq1", "msg_twicea1"]
    assert other_key.status_code == 200  # another key is another append
    stored = await item_ids(llm, conversation)
    assert len(stored) == 3 and all(count == 1 for count in stored.values()), stored


async def test_llm_api_creates_a_response_s_new_conversation_once(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI, other_llm: AsyncOpenAI
) -> None:
    """`?create=true`: the conversation is made under the id response-api chose, by the first
    delivery only; the id is then the caller's, and nobody else can take it."""
    conversation = new_conversation_id()
    items: list[dict[str, Any]] = [
        {
            "id": "msg_newq1",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Q"}],
        },
        {
            "id": "msg_newa1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "A"}],
        },
    ]

    def headers(user: str, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {issuer.mint(user)}",
            "X-Internal-Token": INTERNAL_TOKEN,
            "Idempotency-Key": key,
        }

    path = f"/internal/conversations/{conversation}/items"
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:
        without = await http.post(path, json={"items": items}, headers=headers("alice", "resp_new0"))
        answers = [
            await http.post(
                f"{path}?create=true", json={"items": items}, headers=headers("alice", "resp_new1")
            )
            for _ in range(2)
        ]
        taken = await http.post(
            f"{path}?create=true", json={"items": []}, headers=headers("mallory", "resp_m")
        )
        empty = await http.post(path, json={"items": []}, headers=headers("alice", "resp_new2"))
        bad_id = await http.post(
            "/internal/conversations/not-an-id/items?create=true",
            json={"items": []},
            headers=headers("alice", "resp_new3"),
        )
        made_empty = new_conversation_id()
        created_empty = await http.post(
            f"/internal/conversations/{made_empty}/items?create=true",
            json={"items": []},
            headers=headers("alice", "resp_new4"),
        )
    assert without.status_code == 404  # no conversation is made without asking
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert [i["id"] for i in answers[1].json()["data"]] == ["msg_newq1", "msg_newa1"]
    assert (await llm.conversations.retrieve(conversation)).id == conversation
    stored = await item_ids(llm, conversation)
    assert stored == Counter({"msg_newq1": 1, "msg_newa1": 1})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    with pytest.raises(openai.NotFoundError):
        await other_llm.conversations.retrieve(conversation)
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "items"
    assert bad_id.status_code == 400
    assert created_empty.status_code == 200 and created_empty.json()["data"] == []
    assert await item_ids(llm, made_empty) == Counter()
