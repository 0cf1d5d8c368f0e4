"""llm-api past its admission bounds: refusals are 429/503 with Retry-After, and every acknowledged
conversation turn is stored (and nothing refused is)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from apps.common.settings import AdmissionSettings
from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually

FLOOD = 24


@pytest.fixture(scope="module")
def tight_llm_api(wired_llm_api: Callable[..., AbstractContextManager[LlmApi]]) -> Iterator[LlmApi]:
    admission = AdmissionSettings(max_concurrent=4, max_concurrent_per_user=2, max_waiting=0)
    with wired_llm_api(admission=admission) as api:
        yield api


def conversations_of(api: LlmApi, token: str) -> list[str]:
    with api.http(token) as http:
        listed = http.get("/v1/conversations", params={"limit": 100}).json()
    return [c["id"] for c in listed["data"]]


def item_count(api: LlmApi, token: str, conversation_id: str) -> int:
    with api.http(token) as http:
        return len(http.get(f"/v1/conversations/{conversation_id}/items").json()["data"])


def test_a_flood_of_conversation_turns_is_refused_past_the_bound_and_nothing_admitted_is_lost(
    tight_llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    # Slow answers keep the admitted turns in flight while the rest of the flood arrives.
    upstream.enqueue(*(Reply(content=["slow ", "answer"], first_byte_delay=0.3) for _ in range(FLOOD)))
    token = tight_llm_api.token()

    async def turn(client: httpx.AsyncClient, number: int) -> httpx.Response:
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": f"turn {number}"}],
            "conversation": {},
            "stream": number % 2 == 0,
        }
        response = await client.post("/v1/chat/completions", json=body)
        await response.aread()
        return response

    async def flood() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=FLOOD)
        async with httpx.AsyncClient(
            base_url=tight_llm_api.url, headers=headers, timeout=30, limits=limits
        ) as c:
            return await asyncio.gather(*(turn(c, n) for n in range(FLOOD)))

    responses = asyncio.run(flood())
    acknowledged = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert acknowledged and refused
    for response in refused:
        assert response.status_code in (429, 503), response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] in ("too_many_concurrent_requests", "server_overloaded")
    # Stored vs acknowledged: one conversation with both items per acknowledged turn, none for a refusal.
    conversations = eventually(
        lambda: (
            (found := conversations_of(tight_llm_api, token)) and len(found) == len(acknowledged) and found
        )
    )
    for conversation_id in conversations:
        assert item_count(tight_llm_api, token, conversation_id) == 2  # committed before the 200


def test_requests_waiting_on_a_slow_model_do_not_hold_the_slots_and_are_all_answered(
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]], upstream: FakeUpstream
) -> None:
    # A model that takes seconds to produce a whole answer: the requests wait at little CPU. With
    # slots held to the end, the 6 queued behind the 2 slots would wait out `max_wait_ms` and get 503s.
    count = 8
    admission = AdmissionSettings(
        max_concurrent=2, max_concurrent_per_user=count, max_waiting=6, max_wait_ms=2000, slot_hold_ms=100
    )
    upstream.enqueue(*(Reply(content=["slow"], first_byte_delay=2.5) for _ in range(count)))
    with wired_llm_api(admission=admission) as api:
        headers = {"Authorization": f"Bearer {api.token()}"}

        async def ask_all() -> list[httpx.Response]:
            body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "take your time"}]}
            limits = httpx.Limits(max_connections=count)
            async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30, limits=limits) as c:
                asks = [c.post("/v1/chat/completions", json=body) for _ in range(count)]
                return await asyncio.gather(*asks)

        responses = asyncio.run(ask_all())
    refused = [r.text for r in responses if r.status_code != 200]
    assert not refused, refused
    assert all(r.json()["choices"][0]["message"]["content"] == "slow" for r in responses)
