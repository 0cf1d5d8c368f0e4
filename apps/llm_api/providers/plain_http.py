"""A keep-alive HTTP/1.1 pool for chat completions to a provider over plain `http://` (a model server
in the cluster, as vLLM usually is), streamed or not.

Why not aiohttp, which carries every other call to a model: per round trip aiohttp's request and
response machinery (its timers, header multidicts, payload registry, a task for the body write, the
response object) cost ~170 µs of CPU on the 2-core bench VM, against ~25 µs for the same bytes
through an asyncio protocol and httptools' parser (one process, uvloop, a canned loopback server):
on a plain completion that was about a quarter of llm-api's own CPU, all of it on the latency path
(`bench/chat_cpu.py`: 783 against 1178 µs per plain request beside the aiohttp build). A stream
also paid aiohttp's stream reader per chunk. `https://` providers (TLS) stay on aiohttp.

What it keeps from the aiohttp session it sits beside: the connect timeout (which also bounds a
wait for a free connection at the limit), the limit on a silence while reading (`read_timeout`,
reset by every byte), idle connections dropped after `keepalive` seconds, at most `max_connections`
in use, no cookies, bodies as they came (no decompression), and a streamed body's backpressure
(plain_wire.py). A connection that breaks before the response's head is complete raises
`ConnectionResetError` from `post` (the caller's one retry is safe then, as with aiohttp's
`ServerDisconnectedError`); one that breaks or stalls later raises from `read` or `chunks`. An
unparsable head raises aiohttp's `ClientResponseError` from `post`, as aiohttp does (a bad answer:
not retried). Redirects are not followed (aiohttp would turn a redirected POST into a GET without
its body, which no model server answers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httptools
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from apps.llm_api.providers.plain_wire import Connection

_USER_AGENT = aiohttp.http.SERVER_SOFTWARE.encode()  # as the aiohttp session says


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    head: bytes  # request line plus the fixed headers
    url: yarl.URL


def plain_target(url: str) -> _Target | None:
    """Where a POST to `url` goes, or None when this pool does not serve it (not plain HTTP, or a URL
    yarl cannot read: aiohttp then fails it as it fails any other)."""
    try:
        parsed = yarl.URL(url)
        if parsed.scheme != "http" or not parsed.raw_host or parsed.raw_user or parsed.raw_password:
            return None
        # Path and Host encoded as aiohttp sends them (percent-escapes, IDNA, IPv6 brackets).
        path, host, port = parsed.raw_path_qs or "/", parsed.host_port_subcomponent, parsed.port or 80
        head = f"POST {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: ".encode("ascii") + _USER_AGENT
    except (ValueError, TypeError, UnicodeError):
        return None
    return _Target(parsed.raw_host, port, head + b"\r\naccept: */*\r\n", parsed)


class PlainResponse:
    """The answer to `PlainPool.post`: its status now, its body from `read` (or, streamed, from
    `chunks`); `close` hands the connection back to the pool (or drops it when the body was not read
    to its end)."""

    def __init__(self, pool: PlainPool, key: tuple[str, int], connection: Connection) -> None:
        self._pool = pool
        self._key = key
        self._connection: Connection | None = connection
        self.status = connection.status
        self.ended = False  # the whole body has been read

    async def read(self) -> bytes:
        assert self._connection is not None, "read after close"
        body = await self._connection.read()
        self.ended = True
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is everything that came since the previous one."""
        connection = self._connection
        assert connection is not None, "read after close"
        while piece := await connection.take():
            # The last piece usually comes with the end of the body: `ended` is already true then.
            self.ended = connection.complete
            yield piece
        self.ended = True

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._release(self._key, connection)


class PlainPool:
    """Keep-alive connections per host and port, one request at a time on each."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float | None, keepalive: float, max_connections: int
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._targets: dict[str, _Target | None] = {}
        self._pruning: asyncio.TimerHandle | None = None
        self._closed = False

    def serves(self, url: str) -> bool:
        return self._target(url) is not None

    def _target(self, url: str) -> _Target | None:
        try:
            return self._targets[url]
        except KeyError:
            pass
        target = plain_target(url)
        if len(self._targets) < 256:  # providers' URLs: a handful; the bound is for safety
            self._targets[url] = target
        return target

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, stream: bool = False
    ) -> PlainResponse:
        target = self._target(url)
        if target is None:
            raise ValueError(f"not a plain HTTP URL: {url}")
        lines = [target.head]
        for name, value in headers.items():
            line = f"{name}: {value}\r\n".encode()
            if line.count(b"\n") != 1 or b"\r" in line[:-2]:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(line)
        lines.append(b"content-length: %d\r\n\r\n" % len(body))
        lines.append(body)
        data = b"".join(lines)
        key = (target.host, target.port)
        if self._slots.locked():  # every connection busy: wait for one as aiohttp would, within the
            async with asyncio.timeout(self.connect_timeout):  # connect timeout
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        try:
            connection = await self._connection(key)
            try:
                await connection.send(data, streaming=stream)
            except httptools.HttpParserError as exc:
                connection.abort()
                info = aiohttp.RequestInfo(target.url, "POST", CIMultiDictProxy(CIMultiDict()))
                raise aiohttp.ClientResponseError(
                    info, (), status=400, message=f"invalid HTTP response: {exc}"
                ) from exc
            except BaseException:
                connection.abort()
                raise
        except BaseException:
            self._slots.release()
            raise
        return PlainResponse(self, key, connection)

    async def _connection(self, key: tuple[str, int]) -> Connection:
        if self._closed:
            raise RuntimeError("the pool is closed")
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive:
                return connection
            connection.abort()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: Connection(loop, self.read_timeout), key[0], key[1]
                )
        except TimeoutError:
            raise
        except OSError as exc:  # refused, no route, no such host: no connection was opened
            raise ConnectionRefusedError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        return protocol

    def _release(self, key: tuple[str, int], connection: Connection) -> None:
        self._slots.release()
        if connection.closed or not connection.complete or self._closed or self.keepalive <= 0:
            connection.abort()
            return
        connection.waiter = None
        now = connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(key, [])
        while idle and now - idle[0].idle_since >= self.keepalive:  # the oldest first
            idle.pop(0).abort()
        idle.append(connection)
        if self._pruning is None:
            self._pruning = asyncio.get_running_loop().call_later(self.keepalive, self._prune)

    def _prune(self) -> None:
        """Close connections idle for `keepalive`, with no request needing their host to notice."""
        self._pruning = None
        now = time.monotonic()
        for key, idle in list(self._idle.items()):
            while idle and now - idle[0].idle_since >= self.keepalive:
                idle.pop(0).abort()
            if not idle:
                del self._idle[key]
        if self._idle:
            oldest = min(idle[0].idle_since for idle in self._idle.values())
            delay = max(oldest + self.keepalive - now, 0.0)
            self._pruning = asyncio.get_running_loop().call_later(delay, self._prune)

    async def aclose(self) -> None:
        self._closed = True
        if self._pruning is not None:
            self._pruning.cancel()
            self._pruning = None
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()
