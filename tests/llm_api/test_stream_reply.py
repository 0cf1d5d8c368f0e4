"""A streamed reply rebuilt from the relayed bytes (`persistence.accumulate_stream`): the events found
by its fast split are exactly those the SSE decoder finds, whatever the stream's shape and however
its bytes were cut into chunks."""

from __future__ import annotations

import orjson
import pytest

from apps.common.sse import SSEDecoder
from apps.llm_api.services.persistence import accumulate_stream, event_data


def decoded(chunks: list[bytes]) -> list[str]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    events.extend(decoder.flush())
    return [event.data for event in events]


def chunk(content: str, finish: str | None = None) -> bytes:
    body = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


TYPICAL = [
    chunk("Hel"),
    chunk("lo é 😀"),
    chunk("", "stop"),
    b'data: {"choices":[],"usage":{"total_tokens":3}}\n\n',
]
STREAMS = {
    "typical": [*TYPICAL, b"data: [DONE]\n\n"],
    "cut short mid-event": [*TYPICAL[:2], b'data: {"choices":[{"ind'],
    "last event without its blank line": [*TYPICAL[:2], b"data: [DONE]"],
    "crlf": [part.replace(b"\n", b"\r\n") for part in TYPICAL],
    "bare cr": [part.replace(b"\n", b"\r") for part in TYPICAL],
    "comments": [b": keep-alive\n\n", *TYPICAL],
    "named event": [*TYPICAL[:1], b'event: error\ndata: {"error": {"message": "x"}}\n\n'],
    "multi-line data": [b'data: {"choices":\ndata: []}\n\n', *TYPICAL],
    "no space after the colon": [b'data:{"choices":[]}\n\n', b"data:  two spaces\n\n"],
    "empty data": [b"data:\n\n", b"data\n\n", *TYPICAL],
    "extra blank lines": [b"\n\n", *TYPICAL, b"\n\n\n"],
    "an id field": [b"id: 7\n" + TYPICAL[0], *TYPICAL[1:]],
    "invalid utf-8": [b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n', *TYPICAL],
    "empty": [],
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_the_events_are_the_decoders_however_the_bytes_are_cut(name: str) -> None:
    raw = b"".join(STREAMS[name])
    expected = decoded([raw])
    for cut in range(len(raw) + 1):
        chunks = [raw[:cut], raw[cut:]]
        assert [_text(data) for data in event_data(chunks)] == expected, (name, cut)
        assert accumulate_stream(chunks) == _reference(chunks), (name, cut)


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _reference(chunks: list[bytes]) -> tuple[object, ...]:
    """What the reply was built from before the fast split: every event through the decoder."""
    content: list[str] = []
    finish = usage = None
    for data in decoded(chunks):
        if data == "[DONE]":
            break
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(parsed, dict):
            continue
        usage = parsed.get("usage") or usage
        for choice in parsed.get("choices") or []:
            if choice.get("index", 0) == 0:
                content.append((choice.get("delta") or {}).get("content") or "")
                finish = choice.get("finish_reason") or finish
    return {"role": "assistant", "content": "".join(content) or None}, finish, usage
