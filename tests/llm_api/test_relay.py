"""The relay: finding `data: [DONE]` across chunk boundaries, rebuilding a reply, how a stream's body
ends, and what a hang-up stops (or not)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from apps.llm_api.providers.plain_http import PlainPool
from apps.llm_api.providers.stream_usage import UsageWatch
from apps.llm_api.providers.upstream import UpstreamResponse
from apps.llm_api.services.persistence import accumulate_stream
from apps.llm_api.services.relay import (
    WATCH_TASK,
    Commit,
    DoneSplicer,
    RelayOutcome,
    StreamRelayResponse,
)
from tests.harness.server import ServerThread
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import CLIENT_TIMEOUT, eventually, eventually_async
from tests.llm_api.raw_upstream import STREAM_HEAD, chunk, server

EVENT = b'data: {"conversation":{}}\n\n'
STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"content":"data: [DONE] is text"}}]}\n\n'
    b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, len(STREAM)])
def test_event_goes_before_done_whatever_the_chunking(size: int) -> None:
    splicer = DoneSplicer(EVENT)
    out = b"".join(splicer.feed(STREAM[i : i + size]) for i in range(0, len(STREAM), size)) + splicer.flush()
    assert out == STREAM.replace(b"data: [DONE]\n\n", EVENT + b"data: [DONE]\n\n")


def test_complete_lines_are_never_held_back() -> None:
    splicer = DoneSplicer(EVENT)
    first = b'data: {"choices":[]}\n\n'
    assert splicer.feed(first) == first
    assert splicer.feed(b"data: [DO") == b""  # could be the terminator: wait for the rest
    assert splicer.feed(b"NE]\n\n") == EVENT + b"data: [DONE]\n\n"


def test_crlf_streams() -> None:
    splicer = DoneSplicer(EVENT)
    out = splicer.feed(b"data: {}\r\n\r\ndata: [DONE]\r\n\r\n")
    assert out == b"data: {}\r\n\r\n" + EVENT + b"data: [DONE]\r\n\r\n"


def test_accumulate_rebuilds_content_tool_calls_and_usage() -> None:
    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        return (
            b"data: "
            + orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            + b"\n\n"
        )

    raw = b"".join(
        [
            chunk({"role": "assistant", "content": "Hi "}),
            chunk({"content": "there"}),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            chunk({}, "tool_calls"),
            b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n',
            b"data: [DONE]\n\n",
        ]
    )
    message, finish, usage = accumulate_stream([raw[:17], raw[17:90], raw[90:]])
    assert message == {
        "role": "assistant",
        "content": "Hi there",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
    }
    assert finish == "tool_calls" and usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


async def _relay_stored_turn(
    upstream: FakeUpstream, response_type: type[UpstreamResponse], *, until_closed: bool = False
) -> list[Message]:
    """Relay a streamed answer of the fake model whose turn is committed before `[DONE]`; the ASGI
    messages sent, with a marker where the commit ran. `until_closed`: the commit returns only once
    the model has closed its stream (a real commit's round trip usually outlasts that)."""
    upstream.enqueue(Reply(content=["Hel", "lo"]))
    messages: list[Message] = []
    answers: list[aiohttp.ClientResponse] = []

    async def commit(chunks: list[bytes]) -> None:
        assert chunks
        if until_closed:
            await eventually_async(lambda: answers[0].content.at_eof(), "the model closed its stream")
        messages.append({"type": "committed"})

    async def send(message: Message) -> None:
        messages.append(message)

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        answer = await session.post(f"{upstream.base_url}/chat/completions", json=body)
        answers.append(answer)
        relay = StreamRelayResponse(
            response_type(answer),
            usage=UsageWatch(lambda: 2),
            conversation_event=EVENT,
            keep_bytes=True,
            on_done=lambda chunks, outcome: None,
            commit=commit,
        )
        await relay({"type": "http"}, receive, send)
    return messages


async def test_a_stored_turns_done_and_the_end_of_the_body_go_out_together(upstream: FakeUpstream) -> None:
    """The model has closed its stream by the time the turn is committed: `[DONE]` is the body's
    last message (one write to the client), after the commit, and nothing is sent after it."""
    messages = await _relay_stored_turn(upstream, UpstreamResponse, until_closed=True)
    committed = messages.index({"type": "committed"})
    assert all(b"[DONE]" not in message.get("body", b"") for message in messages[:committed])
    assert messages[committed + 1 :] == [
        {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
    ]


class _StillOpen(UpstreamResponse):
    def ended(self) -> bool:
        return False  # as if the model kept its stream open after `[DONE]`


async def test_a_stored_turns_done_goes_out_at_once_while_the_model_has_not_closed(
    upstream: FakeUpstream,
) -> None:
    messages = await _relay_stored_turn(upstream, _StillOpen)
    committed = messages.index({"type": "committed"})
    assert messages[committed + 1 :] == [
        {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


async def _open(base_url: str, through: str, stack: AsyncExitStack) -> UpstreamResponse:
    """A streamed answer, through the plain pool (as llm-api reaches an http:// provider) or through
    aiohttp (as an https:// one)."""
    body = b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"stream":true}'
    if through == "plain":
        plain = PlainPool(connect_timeout=5, read_timeout=5, keepalive=4, max_connections=4)
        stack.push_async_callback(plain.aclose)
        return UpstreamResponse(await plain.post(f"{base_url}/chat/completions", body, {}, stream=True))
    session = await stack.enter_async_context(aiohttp.ClientSession())
    return UpstreamResponse(await session.post(f"{base_url}/chat/completions", data=body))


def _relay(
    answer: UpstreamResponse, outcomes: list[RelayOutcome | None], commit: Commit | None = None
) -> StreamRelayResponse:
    return StreamRelayResponse(
        answer,
        usage=UsageWatch(lambda: 2),
        conversation_event=None,
        keep_bytes=True,
        on_done=lambda chunks, outcome: outcomes.append(outcome),
        commit=commit,
    )


async def _stays() -> Message:
    await asyncio.Event().wait()
    raise AssertionError


@pytest.mark.parametrize("through", ["plain", "aiohttp"])
@pytest.mark.parametrize("together", [True, False], ids=["end-with-done", "end-later"])
async def test_an_unstored_streams_done_ends_the_body_when_the_models_answer_has_ended(
    through: str, together: bool
) -> None:
    """`[DONE]` read with the end of the model's body ends ours in the same message (one write to the
    client); read before it, `[DONE]` goes out at once and the end follows."""
    done, end = chunk(b"data: [DONE]\n\n"), b"0\r\n\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.01)
        if together:
            writer.write(done + end)
        else:
            writer.write(done)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(end)
        return True

    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    outcomes: list[RelayOutcome | None] = []
    async with server(answer) as raw, AsyncExitStack() as stack:
        answer_ = await _open(raw.url.removesuffix("/chat/completions"), through, stack)
        await _relay(answer_, outcomes)({"type": "http"}, _stays, send)
    # (The usage chunk llm-api adds, the model having sent none, goes right before `[DONE]`.)
    bodies = [(message["body"][-14:], message["more_body"]) for message in messages[1:]]
    if together:
        assert bodies == [(b"data: 1\n\n", True), (b"data: [DONE]\n\n", False)]
    else:
        assert bodies == [(b"data: 1\n\n", True), (b"data: [DONE]\n\n", True), (b"", False)]
    assert outcomes == [None]


async def test_a_client_hanging_up_during_the_commit_does_not_stop_it(upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["Hel", "lo"]))
    hang_up = asyncio.Event()
    stored: list[int] = []

    async def commit(chunks: list[bytes]) -> None:
        hang_up.set()
        await asyncio.sleep(0.05)  # the watch sees the hang-up while the turn is being stored
        stored.append(len(chunks))

    async def receive() -> Message:
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await asyncio.sleep(0)  # as a socket write may: a point where a cancellation lands

    outcomes: list[RelayOutcome | None] = []
    async with AsyncExitStack() as stack:
        relay = _relay(await _open(upstream.base_url, "plain", stack), outcomes, commit)
        await relay({"type": "http"}, receive, send)  # returns: the hang-up is not an error
    assert stored and relay.stored and outcomes == [None]  # the turn is whole and stored


async def test_a_hang_up_stops_a_silent_stream_and_another_cancellation_goes_through(
    upstream: FakeUpstream,
) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def hung_up() -> Message:
        return {"type": "http.disconnect"}

    outcomes: list[RelayOutcome | None] = []
    async with AsyncExitStack() as stack:
        upstream.enqueue(Reply(content=["one ", "two"], stall_after_chunks=1))
        answer = await _open(upstream.base_url, "plain", stack)
        await _relay(answer, outcomes)({"type": "http"}, hung_up, send)
        assert outcomes == ["client_disconnected"]

        upstream.enqueue(Reply(content=["one ", "two"], stall_after_chunks=1))
        answer = await _open(upstream.base_url, "plain", stack)
        sent.clear()
        relaying = asyncio.create_task(_relay(answer, outcomes)({"type": "http"}, _stays, send))
        await eventually_async(lambda: len(sent) == 2, "the head and the first chunk went out")
        relaying.cancel()  # a server shutting down, say: not the client's hang-up
        with pytest.raises(asyncio.CancelledError):
            await relaying
        assert outcomes == ["client_disconnected", "client_disconnected"]


def test_a_finished_stream_leaves_nothing_to_the_garbage_collector(upstream: FakeUpstream) -> None:
    """Served by uvicorn, whose `receive` answers `http.disconnect` once the response is complete: the
    hang-up watch then ends by itself, and nothing of the stream is left in a reference cycle (a
    cancelled watch was: its `CancelledError`'s traceback held it)."""
    outcomes: list[RelayOutcome | None] = []
    watches: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()  # held, they would not be garbage

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        async with AsyncExitStack() as stack:
            await _relay(await _open(upstream.base_url, "plain", stack), outcomes)(scope, receive, send)
        watches.update(task for task in asyncio.all_tasks() if task.get_name() == WATCH_TASK)

    upstream.enqueue(Reply(content=["Hel", "lo"]))
    server = ServerThread(app)
    server.start()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answer = httpx.post(server.url, content=b"{}", timeout=CLIENT_TIMEOUT)
        eventually(lambda: bool(outcomes) and all(watch.done() for watch in watches))  # the watch ended
        gc.collect()
        ours = StreamRelayResponse.__module__
        cyclic = [type(o).__name__ for o in gc.garbage if type(o).__module__ == ours]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        server.stop()
    assert answer.text.endswith("data: [DONE]\n\n") and outcomes == [None] and cyclic == []
