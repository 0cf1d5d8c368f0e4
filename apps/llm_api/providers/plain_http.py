"""A keep-alive HTTP/1.1 pool for the one call whose answer is read whole: a non-streamed chat completion
to a provider over plain `http://` (a model server in the cluster, as vLLM usually is).

Why not aiohttp, which carries every other call to a model: per round trip aiohttp's request and
response machinery (its timers, header multidicts, payload registry, a task for the body write, the
response object) cost ~170 µs of CPU on the 2-core bench VM, against ~25 µs for the same bytes
through an asyncio protocol and httptools' parser (one process, uvloop, a canned loopback server):
on a plain completion that was about a quarter of llm-api's own CPU, all of it on the latency path
(`bench/chat_cpu.py`: 783 against 1178 µs per plain request beside the aiohttp build). Streams
(their chunks, backpressure and cut-offs) and `https://` providers (TLS) stay on aiohttp.

What it keeps from the aiohttp session it sits beside: the connect timeout (which also bounds a
wait for a free connection at the limit), the limit on a silence while reading (`read_timeout`,
reset by every byte), idle connections dropped after `keepalive` seconds, at most `max_connections`
in use, no cookies, bodies as they came (no decompression). A connection that breaks before the
response's head is complete raises `ConnectionResetError` from `post` (the caller's one retry is
safe then, as with aiohttp's `ServerDisconnectedError`); one that breaks or stalls later raises from
`read`. An unparsable head raises aiohttp's `ClientResponseError` from `post`, as aiohttp does
(a bad answer: not retried). Redirects are not followed (aiohttp would turn a redirected POST into
a GET without its body, which no model server answers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httptools
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

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


class _Connection(asyncio.Protocol):
    """One connection, one request at a time; its response collected by httptools' callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # The silence watch: armed at a request's write, kept across the requests of the connection and
        # re-armed when it fires for the time left (not one timer made and cancelled per request).
        self.timer: asyncio.TimerHandle | None = None
        self._reset(None)

    def _reset(self, waiter: asyncio.Future[None] | None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = waiter  # set when the head is complete, then again at the end of the body
        self.status = 0
        self.head_done = False
        self.complete = False
        self.until_eof = True  # no length and not chunked: the body ends with the connection
        self.body: list[bytes] = []
        self.error: BaseException | None = None
        self.last_read = self.loop.time()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        if self.waiter is None or self.complete:  # bytes nobody asked for: the connection is spoiled
            self._fail(ConnectionResetError("unexpected bytes from the model server"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # A bad head is a bad answer, not a lost connection: `post` raises it as aiohttp does (no
            # retry, the model may have done the work). A bad body is a payload cut short, as there.
            self._fail(aiohttp.ClientPayloadError(f"invalid HTTP response: {exc}") if self.head_done else exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.complete:
            if self.head_done and self.until_eof:
                self.on_message_complete()
            else:
                self._fail(ConnectionResetError(f"the model server closed the connection ({exc or 'EOF'})"))
        self._stop_timer()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self.until_eof = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # an interim answer (100 Continue): the real one follows
            self.until_eof = True
            return
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if not self.head_done:
            return
        self.complete = True
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.closed = True
            self.transport.close()
            self._stop_timer()
        self._wake()

    # the request's side
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_silence(self) -> None:
        assert self.read_timeout is not None
        if self.waiter is None or self.complete:  # between requests: no answer is awaited
            self.timer = None
            return
        remaining = self.last_read + self.read_timeout - self.loop.time()
        if remaining > 0:
            self.timer = self.loop.call_later(remaining, self._check_silence)
        else:
            self.timer = None
            self._fail(TimeoutError("the model server sent nothing in time"))

    async def send(self, data: bytes) -> None:
        """Write the request; return once the response's head is in (the body may still come)."""
        self._reset(self.loop.create_future())
        assert self.transport is not None and self.waiter is not None
        if self.read_timeout is not None and self.timer is None:
            self.timer = self.loop.call_later(self.read_timeout, self._check_silence)
        self.transport.write(data)
        await self.waiter

    async def read(self) -> bytes:
        if not self.complete:
            if self.error is not None:
                raise self.error
            self.waiter = self.loop.create_future()
            await self.waiter
        body = self.body
        return body[0] if len(body) == 1 else b"".join(body)

    def abort(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()


class PlainResponse:
    """The answer to `PlainPool.post`: its status now, its body from `read`; `close` hands the
    connection back to the pool (or drops it when the body was not read to its end)."""

    def __init__(self, pool: PlainPool, key: tuple[str, int], connection: _Connection) -> None:
        self._pool = pool
        self._key = key
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.ended = False  # the whole body has been read

    async def read(self) -> bytes:
        assert self._connection is not None, "read after close"
        body = await self._connection.read()
        self.ended = True
        return body

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._release(self._key, connection)


class PlainPool:
    """Keep-alive connections per host and port, for `post`s whose answers are read whole."""

    def __init__(
        self, *, connect_timeout: float, read_timeout: float | None, keepalive: float, max_connections: int
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive = keepalive
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
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

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PlainResponse:
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
                await connection.send(data)
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

    async def _connection(self, key: tuple[str, int]) -> _Connection:
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
                    lambda: _Connection(loop, self.read_timeout), key[0], key[1]
                )
        except TimeoutError:
            raise
        except OSError as exc:  # refused, no route, no such host: no connection was opened
            raise ConnectionRefusedError(f"cannot connect to {key[0]}:{key[1]}: {exc}") from exc
        return protocol

    def _release(self, key: tuple[str, int], connection: _Connection) -> None:
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
