"""Fault injection: Postgres stops while chat turns into conversations are in flight.

The rule: a turn is acknowledged (a plain 200, a stream's `data: [DONE]`) only once it is stored.
The model's replies are held (`Reply.hold`) until every request is in flight; then the embedded
Postgres is really stopped (`pg_ctl stop`), the replies are let go, and Postgres is started again,
either after every client has its answer (an outage longer than the retry budget) or while the
writes are still retrying (a short one). Every client's outcome is read off the wire, and every
acknowledged turn is looked up through the public API afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from apps.common.sse import aiter_events
from apps.gateway.embedded import EmbeddedPostgres
from tests.harness.issuer import TestIssuer
from tests.harness.llm_api import FAKE_MODEL, LlmApi, llm_api_settings, running_llm_api
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually_async as eventually

N = 8  # concurrent turns: half streamed, half plain; half into existing conversations, half new
CONTENT = ["The ", "answer ", "is ", "stored."]


@dataclass
class Outcome:
    streamed: bool
    question: str
    conversation: str | None  # the id the client was given (or sent)
    acknowledged: bool = False  # a 200 with a body, or `[DONE]`
    error: dict[str, Any] | None = None  # the OpenAI envelope's `error` the client saw
    status: int = 0
    content: str = ""
    content_complete: threading.Event = field(default_factory=threading.Event)
    retry_after: str | None = None


async def plain_turn(http: httpx.AsyncClient, outcome: Outcome, conversation: Any) -> Outcome:
    body = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": outcome.question}],
        "conversation": conversation,
    }
    response = await http.post("/v1/chat/completions", json=body)
    outcome.status = response.status_code
    payload = response.json()
    if response.status_code == 200:
        outcome.acknowledged = True
        outcome.content = payload["choices"][0]["message"]["content"]
        outcome.conversation = payload["conversation"]["id"]
    else:
        outcome.error = payload["error"]
        outcome.retry_after = response.headers.get("retry-after")
    return outcome


async def stream_turn(http: httpx.AsyncClient, outcome: Outcome, conversation: Any) -> Outcome:
    body = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": outcome.question}],
        "conversation": conversation,
        "stream": True,
    }
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        outcome.status = response.status_code
        if response.status_code != 200:
            outcome.error = orjson.loads(await response.aread())["error"]
            return outcome
        async for sse in aiter_events(response):
            data = sse.data
            assert not outcome.acknowledged, "nothing may follow [DONE]"
            if data == "[DONE]":
                outcome.acknowledged = True
                continue
            assert outcome.error is None, "nothing may follow the error event"
            event = orjson.loads(data)
            if "error" in event:
                outcome.error = event["error"]
                continue
            if event.get("conversation"):
                outcome.conversation = event["conversation"]["id"]
            for choice in event.get("choices") or []:
                outcome.content += (choice.get("delta") or {}).get("content") or ""
                if choice.get("finish_reason"):
                    outcome.content_complete.set()
    return outcome


async def start_turns(
    api: LlmApi, http: httpx.AsyncClient, upstream: FakeUpstream, hold: threading.Event
) -> tuple[list[Outcome], list[asyncio.Task[Outcome]]]:
    """N turns held at the model; returns once all of them have reached it."""
    upstream.enqueue(*(Reply(content=CONTENT, hold=hold) for _ in range(N)))
    outcomes: list[Outcome] = []
    tasks: list[asyncio.Task[Outcome]] = []
    for number in range(N):
        existing = number % 4 < 2
        conversation: Any = {}
        if existing:
            created = await http.post("/v1/conversations", json={})
            assert created.status_code == 200, created.text
            conversation = created.json()["id"]
        outcome = Outcome(
            streamed=number % 2 == 0,
            question=f"question {number}",
            conversation=conversation if existing else None,
        )
        turn: Callable[[httpx.AsyncClient, Outcome, Any], Coroutine[Any, Any, Outcome]] = (
            stream_turn if outcome.streamed else plain_turn
        )
        outcomes.append(outcome)
        tasks.append(asyncio.create_task(turn(http, outcome, conversation)))
    await eventually(lambda: len(upstream.requests) == N, "every turn reached the model")
    return outcomes, tasks


def stored_items(http: httpx.Client, conversation: str) -> list[dict[str, Any]] | None:
    """The conversation's items through the public API (None: the conversation does not exist)."""
    response = http.get(f"/v1/conversations/{conversation}/items", params={"order": "asc"})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def assert_none_acknowledged_and_lost(api: LlmApi, token: str, outcomes: list[Outcome]) -> None:
    with api.http(token) as http:
        for outcome in outcomes:
            items = stored_items(http, outcome.conversation) if outcome.conversation else None
            texts = [part["text"] for item in items or () for part in item["content"]]
            if outcome.acknowledged:
                assert outcome.error is None
                assert texts == [outcome.question, "".join(CONTENT)], outcome
            else:
                assert outcome.error is not None, f"the client was told nothing: {outcome}"
                # Nothing half-written: neither the question nor a new, empty conversation.
                assert not items, outcome


async def test_an_outage_longer_than_the_retry_budget_is_reported_and_leaves_nothing(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    settings = llm_api_settings(
        own_postgres.url,
        issuer,
        default_provider_url=upstream.base_url,
        default_provider_name="fake",
        storage_retry_seconds=0.5,
    )
    hold = threading.Event()
    with running_llm_api(settings, issuer) as api:
        token = api.token()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as http:
            outcomes, tasks = await start_turns(api, http, upstream, hold)
            await asyncio.to_thread(own_postgres.stop)
            try:
                hold.set()
                await asyncio.gather(*tasks)  # every client has its answer before Postgres is back
            finally:
                await asyncio.to_thread(own_postgres.start)
        for outcome in outcomes:
            assert not outcome.acknowledged, outcome
            assert outcome.error is not None and outcome.error["code"] == "storage_unavailable", outcome
            if outcome.streamed:  # content first, never held back by storage; then the error
                assert outcome.status == 200 and outcome.content == "".join(CONTENT)
            else:
                assert outcome.status == 503 and outcome.retry_after, outcome
        assert_none_acknowledged_and_lost(api, token, outcomes)
        # The service is whole again once the database is back.
        with api.client(token) as client:
            reply = client.chat.completions.create(
                model=FAKE_MODEL,
                messages=[{"role": "user", "content": "again"}],
                extra_body={"conversation": {}},
            )
        conversation = reply.model_extra["conversation"]["id"] if reply.model_extra else None
        assert conversation is not None
        with api.http(token) as http:
            assert len(stored_items(http, conversation) or []) == 2


async def test_a_short_outage_is_ridden_out_and_every_turn_is_stored(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    settings = llm_api_settings(
        own_postgres.url,
        issuer,
        default_provider_url=upstream.base_url,
        default_provider_name="fake",
        storage_retry_seconds=60,
    )
    hold = threading.Event()
    with running_llm_api(settings, issuer) as api:
        token = api.token()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=90) as http:
            outcomes, tasks = await start_turns(api, http, upstream, hold)
            await asyncio.to_thread(own_postgres.stop)
            try:
                hold.set()
                streams = [o for o in outcomes if o.streamed]
                # Content reaches the client while the database is down ...
                await eventually(
                    lambda: all(o.content_complete.is_set() for o in streams), "every stream had its content"
                )
                # ... but no acknowledgement does.
                assert not any(task.done() for task in tasks)
                assert not any(o.acknowledged for o in outcomes)
            finally:
                await asyncio.to_thread(own_postgres.start)
            await asyncio.gather(*tasks)
        assert all(o.acknowledged for o in outcomes), [o for o in outcomes if not o.acknowledged]
        assert_none_acknowledged_and_lost(api, token, outcomes)


def test_after_a_restart_the_first_requests_get_live_connections(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    """Without a ping per checkout (apps.common.db), pooled connections the restart closed are not
    handed out: reads, which are not retried, answer at once after Postgres is back."""
    settings = llm_api_settings(
        own_postgres.url, issuer, default_provider_url=upstream.base_url, default_provider_name="fake"
    )
    with running_llm_api(settings, issuer) as api, api.http() as http:
        conversations = [http.post("/v1/conversations", json={}).json()["id"] for _ in range(3)]
        own_postgres.stop()
        own_postgres.start()
        for conversation in conversations:
            assert stored_items(http, conversation) == []
