"""Resumable streams: a streamed background response is replayed and followed from any replica.

Two response-api instances share one Postgres (`replica_a`, `replica_b`). Followers wait for a
notice only (`STREAM_FOLLOW_QUIET_SECONDS` is far beyond the test's patience), so a test that passes
shows the cross-replica `NOTIFY` at work, not a periodic re-read.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import openai
import pytest
from openai import AsyncOpenAI

from apps.response_api.services.events import EventLog, Frame
from apps.response_api.services.state import ResponseState
from apps.response_api.types import ResponseBody
from tests.harness.response_api import MODEL, ServerFactory
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually_async
from tests.response_api.scripts import call

REPLICA = {"stream_follow_quiet_seconds": 3600.0}


@pytest.fixture(scope="module")
def replica_a(response_api_server: ServerFactory) -> Iterator[str]:
    with response_api_server(**REPLICA) as url:
        yield url


@pytest.fixture(scope="module")
def replica_b(response_api_server: ServerFactory) -> Iterator[str]:
    with response_api_server(**REPLICA) as url:
        yield url


@pytest.fixture
async def client(replica_a: str, token: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{replica_a}/v1", api_key=token, max_retries=0) as openai_client:
        yield openai_client


@pytest.fixture
async def client_b(replica_b: str, token: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{replica_b}/v1", api_key=token, max_retries=0) as openai_client:
        yield openai_client


def dumped(events: list[Any]) -> list[dict[str, Any]]:
    return [event.model_dump() for event in events]


async def start_and_leave(
    client: AsyncOpenAI, upstream: FakeUpstream, hold: threading.Event
) -> tuple[str, list[Any]]:
    """A background stream whose second model round is held; the client leaves after the tool call."""
    upstream.enqueue(
        Reply(content=["Let me ", "add."], tool_calls=[call("add", {"a": 20, "b": 22}, "r1")]),
        Reply(content=["The answer ", "is ", "42."], hold=hold),
    )
    stream = await client.responses.create(model=MODEL, input="20 + 22?", background=True, stream=True)
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if event.type == "response.mcp_call.completed":
            break  # the response now waits for its held second round
    await stream.close()
    return seen[0].response.id, seen


async def test_resume_after_a_disconnect_gives_exactly_the_remaining_events(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    response_id, seen = await start_and_leave(client, upstream, hold)
    last = seen[-1].sequence_number
    hold.set()

    resumed = await client.responses.retrieve(response_id, stream=True, starting_after=last)
    rest = [event async for event in resumed]

    numbers = [event.sequence_number for event in [*seen, *rest]]
    assert numbers == list(range(len(numbers)))  # no gap, no duplicate
    assert rest[-1].type == "response.completed"
    assert rest[-1].response.output_text == "Let me add.The answer is 42."
    replay = await client.responses.retrieve(response_id, stream=True)
    assert dumped([event async for event in replay]) == dumped([*seen, *rest])


async def test_resume_through_another_replica_follows_live(
    client: AsyncOpenAI, client_b: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    response_id, seen = await start_and_leave(client, upstream, hold)
    last = seen[-1].sequence_number

    resumed = await client_b.responses.retrieve(response_id, stream=True, starting_after=last)
    rest: list[Any] = []
    async for event in resumed:
        rest.append(event)
        if event.type == "response.output_item.done" and event.item.type == "mcp_call":
            hold.set()  # replica B has caught up; the rest is produced only now, on replica A
    numbers = [event.sequence_number for event in [*seen, *rest]]
    assert numbers == list(range(len(numbers)))
    assert hold.is_set()
    assert [e.delta for e in rest if e.type == "response.output_text.delta"] == ["The answer ", "is ", "42."]
    assert rest[-1].type == "response.completed"
    assert (await client_b.responses.retrieve(response_id)).status == "completed"


async def test_a_finished_response_resumes_on_another_replica(
    client: AsyncOpenAI, client_b: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    response_id, seen = await start_and_leave(client, upstream, hold)
    hold.set()
    async for _ in await client.responses.retrieve(response_id, stream=True):
        pass  # a follower's stream ends when the response has ended
    assert (await client_b.responses.retrieve(response_id)).status == "completed"
    last = seen[-1].sequence_number
    resumed = await client_b.responses.retrieve(response_id, stream=True, starting_after=last)
    rest = [event async for event in resumed]
    numbers = [event.sequence_number for event in [*seen, *rest]]
    assert numbers == list(range(len(numbers)))

    # The SDK's own resume helper rebuilds the whole response from the replayed events.
    async with client_b.responses.stream(response_id=response_id, starting_after=last) as stream:
        tail = [event async for event in stream]
        final = await stream.get_final_response()
    assert [event.sequence_number for event in tail] == [event.sequence_number for event in rest]
    assert final.output_text == "Let me add.The answer is 42."
    past_the_end = await client_b.responses.retrieve(response_id, stream=True, starting_after=numbers[-1])
    assert [event async for event in past_the_end] == []


async def test_only_streamed_background_responses_can_be_streamed_again(
    client: AsyncOpenAI, other_client_a: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    plain = await client.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.retrieve(plain.id, stream=True)
    assert refused.value.body["param"] == "stream"  # type: ignore[index]
    background = await client.responses.create(model=MODEL, input="hi", background=True)
    with pytest.raises(openai.BadRequestError):
        await client.responses.retrieve(background.id, stream=True)

    hold = threading.Event()
    response_id, _ = await start_and_leave(client, upstream, hold)
    hold.set()
    with pytest.raises(openai.NotFoundError):
        await other_client_a.responses.retrieve(response_id, stream=True, starting_after=0)
    with pytest.raises(openai.BadRequestError):
        await client.responses.retrieve(response_id, stream=True, starting_after=-1)


@pytest.fixture
async def other_client_a(replica_a: str, issuer: Any) -> AsyncIterator[AsyncOpenAI]:
    key = issuer.mint("mallory")
    async with AsyncOpenAI(base_url=f"{replica_a}/v1", api_key=key, max_retries=0) as openai_client:
        yield openai_client


async def test_the_event_log_writes_a_burst_in_one_statement() -> None:
    writes: list[list[Frame]] = []
    fail_once = [True]

    async def write(batch: list[Frame]) -> None:
        if fail_once[0]:
            fail_once[0] = False
            raise ConnectionError("database away")
        writes.append(batch)

    log = EventLog(write, linger=0.0)
    for number in range(100):  # a burst of tokens: nothing waits for storage in between
        log.append(number, b"frame %d" % number)
    await eventually_async(lambda: bool(writes), "the batch was written after one failure")
    assert len(writes) == 1 and [number for number, _ in writes[0]] == list(range(100))
    log.append(100, b"last")
    assert await log.close() == [(100, b"last")]  # left for the final transaction


async def test_live_events_never_wait_for_the_event_log() -> None:
    """The streaming client gets each event as it happens while the log's write hangs (a database
    that does not answer); what the log could not store stays queued for the final write."""
    hung = asyncio.Event()
    attempts: list[list[Frame]] = []

    async def write(batch: list[Frame]) -> None:
        attempts.append(batch)
        await hung.wait()

    body = cast(ResponseBody, {"id": "resp_live", "status": "queued", "output": []})  # what the test reads
    state = ResponseState(body, EventLog(write, linger=0.0))
    live = state.listen()
    state.start()
    index = state.open_message()
    state.text_delta(index, "first")
    await eventually_async(lambda: bool(attempts), "the log's first write is under way")
    state.text_delta(index, "second")  # while that write hangs
    frames = [live.get_nowait() for _ in range(live.qsize())]
    assert len(frames) == 6
    last = frames[-1]
    assert last is not None and b'"delta":"second"' in last
    log = state.detach_log()
    assert log is not None
    assert [frame for _, frame in await log.close()] == frames


async def test_a_cancel_through_another_replica_ends_the_followers(
    client: AsyncOpenAI, client_b: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    response_id, seen = await start_and_leave(client, upstream, hold)
    try:
        resumed = await client_b.responses.retrieve(
            response_id, stream=True, starting_after=seen[-1].sequence_number
        )
        assert (await client_b.responses.cancel(response_id)).status == "cancelled"
        rest = [event async for event in resumed]  # ends: the response is over
    finally:
        hold.set()
    assert "response.completed" not in [event.type for event in rest]
    assert (await client.responses.retrieve(response_id)).status == "cancelled"
