"""The relay's byte-level pieces: finding `data: [DONE]` across chunk boundaries, rebuilding a reply."""

from __future__ import annotations

import orjson
import pytest

from apps.llm_api.services.persistence import accumulate_stream
from apps.llm_api.services.relay import DoneSplicer

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
