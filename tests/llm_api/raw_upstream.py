"""A raw loopback HTTP server that answers byte for byte as a test scripts it, and a `PlainPool` to
call it with (tests of apps/llm_api/providers/plain_http.py and plain_wire.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from apps.llm_api.providers.plain_http import PlainPool
from apps.llm_api.providers.plain_wire import Connection
from apps.llm_api.providers.registry import ModelRoute, Provider

BODY = b'{"id":"chatcmpl-1","object":"chat.completion"}'
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)

STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """`data` as one piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


@dataclass
class Server:
    url: str
    connections: int = 0
    closed: int = 0  # connections the client closed (or the server did)
    requests: list[bytes] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[Server]:
    """`answer(reader, writer, number)` answers request `number` (from 0); False closes the connection."""
    state = Server(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                state.requests.append(request)
                if not await answer(reader, writer, len(state.requests) - 1):
                    return
        finally:
            state.closed += 1
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with listener:
        yield state


def pool(**overrides: float) -> PlainPool:
    settings = {"connect_timeout": 5.0, "read_timeout": 5.0, "keepalive": 4.0, "max_connections": 8}
    return PlainPool(**{**settings, **overrides})  # type: ignore[arg-type]


async def post(plain: PlainPool, url: str) -> tuple[int, bytes]:
    response = await plain.post(url, b'{"model":"m"}', {"content-type": "application/json"})
    try:
        return response.status, await response.read()
    finally:
        response.close()


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
    writer.write(OK)
    return True


def idle(plain: PlainPool) -> list[Connection]:
    """The pool's idle connections, whatever their host."""
    return [connection for pooled in plain._idle.values() for connection in pooled]


def route(base_url: str) -> ModelRoute:
    provider = Provider(
        id="prov_raw",
        name="raw",
        kind="openai_compatible",
        vendor="raw",
        base_url=base_url,
        api_key=None,
        active=True,
        source="environment",
        rank=0,
    )
    return ModelRoute(public_id="raw/m", upstream_id="m", provider=provider, created=0)
