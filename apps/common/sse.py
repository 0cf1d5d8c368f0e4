"""Server-sent events: an encoder for our responses and an incremental decoder for upstream streams.

The decoder follows the WHATWG event-stream rules that matter for OpenAI-style streams: lines end in
LF, CRLF or CR; `data:` lines of one event are joined with LF; a blank line dispatches the event;
comment lines (starting with `:`) are ignored; one optional space after the colon is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from apps.common.storable import dumps

DONE = b"data: [DONE]\n\n"


def encode_event(data: str | bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event; multi-line data is split across `data:` lines."""
    payload = data.encode() if isinstance(data, str) else data
    parts: list[bytes] = []
    if event:
        parts.append(b"event: " + event.encode() + b"\n")
    if id:
        parts.append(b"id: " + id.encode() + b"\n")
    for line in payload.splitlines() or [b""]:
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def encode_json(obj: Any, *, event: str | None = None) -> bytes:
    return encode_event(dumps(obj), event=event)


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events completed so far."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        self._buffer += chunk
        events: list[ServerSentEvent] = []
        while True:
            line, found = self._take_line()
            if not found:
                return events
            event = self._process(line)
            if event is not None:
                events.append(event)

    def flush(self) -> list[ServerSentEvent]:
        """Events left when the stream ends without a final blank line."""
        events: list[ServerSentEvent] = []
        if self._buffer:
            event = self._process(self._buffer.decode("utf-8", "replace"))
            self._buffer = b""
            if event is not None:
                events.append(event)
        event = self._process("")
        if event is not None:
            events.append(event)
        return events

    def _take_line(self) -> tuple[str, bool]:
        buffer = self._buffer
        # The first line end, found in C (bytes.find), not by a Python loop over every byte.
        ends = [found for found in (buffer.find(b"\n"), buffer.find(b"\r")) if found >= 0]
        if not ends:
            return "", False
        index = min(ends)
        if buffer[index] == 0x0D and index + 1 == len(buffer):
            return "", False  # a CR at the end may be the first half of CRLF
        skip = 2 if buffer[index : index + 2] == b"\r\n" else 1
        self._buffer = buffer[index + skip :]
        return buffer[:index].decode("utf-8", "replace"), True

    def _process(self, line: str) -> ServerSentEvent | None:
        if line == "":
            if not self._data and self._event is None:
                return None
            event = ServerSentEvent(data="\n".join(self._data), event=self._event or "message", id=self._id)
            self._data, self._event = [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


async def aiter_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """Decode a streaming httpx response into events as its bytes arrive."""
    async for event in decode_events(response.aiter_raw()):
        yield event


async def decode_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Decode a body, in whatever pieces it arrives (any HTTP client's), into events."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
