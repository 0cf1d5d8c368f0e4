"""One keep-alive HTTP/1.1 connection to a model server, for `PlainPool` (plain_http.py): an asyncio
protocol whose response is parsed by httptools' callbacks and handed over whole or as it arrives.

A streamed answer (`send(..., streaming=True)`) is handed over in pieces by `take`: whatever arrived
since the last `take`, joined, so a reader that fell behind catches up in one piece rather than one
per network read. While more than `STREAM_BUFFER_LIMIT` bytes wait to be taken, the connection stops
reading from the socket (the model server then blocks on its own send buffer), as aiohttp's stream
reader does; the silence limit does not count while it is stopped.
"""

from __future__ import annotations

import asyncio

import aiohttp
import httptools

# What a streamed answer may hold unread before the socket is paused: aiohttp's default (twice 64 KiB).
STREAM_BUFFER_LIMIT = 128 * 1024


class Connection(asyncio.Protocol):
    """One connection, one request at a time. `waiter` is not None from a request's write until the
    pool takes the connection back: bytes arriving while it is None spoil the connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float | None) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.paused = False  # reading stopped: a streamed answer's reader is behind
        # The silence watch: armed at a request's write, kept across the requests of the connection and
        # re-armed when it fires for the time left (not one timer made and cancelled per request).
        self.timer: asyncio.TimerHandle | None = None
        self._reset(None, streaming=False)

    def _reset(self, waiter: asyncio.Future[None] | None, *, streaming: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = waiter  # set when the head is complete, then again at the end of the body
        self.streaming = streaming  # and then also at every piece of the body
        self.status = 0
        self.head_done = False
        self.complete = False
        self.until_eof = True  # no length and not chunked: the body ends with the connection
        self.body: list[bytes] = []
        self.buffered = 0  # bytes in `body` (counted for a streamed answer only)
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
        if self.streaming:
            self.buffered += len(body)
            if self.buffered > STREAM_BUFFER_LIMIT and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return
        self.complete = True
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.closed = True
            self.transport.close()
            self._stop_timer()
        else:  # nothing more of this answer to hold back: the next one reads as usual
            self._resume()
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
        if self.paused:  # our reader is behind, not the model: its silence starts when reading resumes
            self.last_read = self.loop.time()
        remaining = self.last_read + self.read_timeout - self.loop.time()
        if remaining > 0:
            self.timer = self.loop.call_later(remaining, self._check_silence)
        else:
            self.timer = None
            self._fail(TimeoutError("the model server sent nothing in time"))

    async def send(self, data: bytes, *, streaming: bool) -> None:
        """Write the request; return once the response's head is in (the body may still come)."""
        self._reset(self.loop.create_future(), streaming=streaming)
        assert self.transport is not None and self.waiter is not None
        if self.read_timeout is not None and self.timer is None:
            self.timer = self.loop.call_later(self.read_timeout, self._check_silence)
        self.transport.write(data)
        await self.waiter

    async def read(self) -> bytes:
        """The whole body (of a streamed answer too: an error status's, say, which is then read
        whole without backpressure)."""
        self.streaming = False
        self._resume()
        while not self.complete:
            await self._more()
        body = self.body
        return body[0] if len(body) == 1 else b"".join(body)

    async def take(self) -> bytes:
        """The streamed body's bytes that arrived since the last call (waiting for some when there are
        none yet); b"" once the body is complete."""
        while not self.body:
            if self.complete:
                return b""
            await self._more()
        body, self.body, self.buffered = self.body, [], 0
        self._resume()
        return body[0] if len(body) == 1 else b"".join(body)

    async def _more(self) -> None:
        """Wait for the parser's next news: a piece of a streamed body, the end, or a failure."""
        if self.error is not None:
            raise self.error
        self.waiter = self.loop.create_future()
        await self.waiter

    def _resume(self) -> None:
        """Read from the socket again, if a streamed body's reader had fallen behind."""
        if not self.paused:
            return
        self.paused = False
        self.last_read = self.loop.time()  # the model's silence counts from now
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()
