"""The relay's byte-level pieces: finding `data: [DONE]` across chunk boundaries, rebuilding a reply."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from starlette.types import Message

from apps.llm_api.providers.stream_usage import UsageWatch
from apps.llm_api.providers.upstream import UpstreamResponse
from apps.llm_api.services.persistence import accumulate_stream
from apps.llm_api.services.relay import DoneSplicer, StreamRelayResponse
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually_async

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
