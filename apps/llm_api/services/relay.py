"""The streaming relay: upstream SSE bytes go to the client as they arrive, untouched.

No chunk is decoded or re-encoded. The relay only watches the byte stream for the final
`data: [DONE]` line, to put what llm-api adds right before it (a usage chunk when the provider sent
none, see `providers/stream_usage.py`, then Jan's `conversation` event) and to know the stream ended
properly. When the upstream fails mid-stream the client gets one SSE event with an OpenAI error
envelope and the response ends cleanly; when the client goes away the upstream request is closed at
once (a watcher on `receive()` cancels the relay, so a silent upstream cannot keep it alive). The
watcher is one bare asyncio task per stream: an anyio task group cost ~45 µs of CPU per stream
against ~6.

When the turn is to be stored, the relay keeps the bytes as sent (what llm-api added included).
Content goes out as it comes; only the `data: [DONE]` line is held back while `commit` stores the
turn (the durability rule: `[DONE]` means stored). If storing is impossible the client gets an SSE
`error` event instead, and no `[DONE]`. `on_done` then learns how the stream ended (an
unacknowledged turn may still be recorded as incomplete); decoding happens there, after the last
byte was sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Literal

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from apps.common.errors import APIError, envelope
from apps.llm_api.providers.stream_usage import UsageWatch
from apps.llm_api.providers.upstream import StreamBroken, UpstreamResponse

log = logging.getLogger(__name__)

DONE_LINE = b"\ndata: [DONE]"
WATCH_TASK = "relay-hang-up-watch"  # the name of each stream's hang-up watch (`_HangUpWatch`)
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

# Why a relayed stream ended without `[DONE]` (and its turn, if recorded, is stored `incomplete`
# with this reason in `incomplete_details`).
IncompleteReason = Literal["client_disconnected", "upstream_error"]
# How a relay that did not complete ended: incomplete, or complete but not storable (no `[DONE]`).
RelayOutcome = IncompleteReason | Literal["storage_failed"]
# (raw chunks or None, None when the stream completed, else how it ended)
OnDone = Callable[[list[bytes] | None, RelayOutcome | None], None]
# Stores the turn from its raw chunks before `[DONE]` is sent; raises `APIError` when it cannot.
Commit = Callable[[list[bytes]], Awaitable[None]]


class DoneSplicer:
    """Finds the `data: [DONE]` line across chunk boundaries and puts an event in front of it.

    Bytes are held back only while they could be the start of that line (`d`, `da`, … `data: [DONE`),
    i.e. never a complete line the client could already use. The event may be a callable, asked for
    its bytes only when the line is found (so it can depend on everything that came before).
    """

    def __init__(self, event: bytes | Callable[[], bytes], *, hold_done: bool = False) -> None:
        self.event = event
        self.hold_done = hold_done
        self.held = b""  # with `hold_done`: the `data: [DONE]` line and whatever followed it
        self.done = False
        self._previous = b"\n"
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            if self.hold_done:
                self.held += chunk
                return b""
            return chunk
        data = self._pending + chunk
        window = self._previous + data
        found = window.find(DONE_LINE)
        if found >= 0:
            self.done = True
            self._pending = b""
            event = self.event() if callable(self.event) else self.event
            if self.hold_done:
                self.held = data[found:]
                return data[:found] + event
            return data[:found] + event + data[found:]
        keep = _partial_suffix(window)
        self._pending = data[len(data) - keep :] if keep else b""
        out = data[: len(data) - keep]
        if out:
            self._previous = out[-1:]
        return out

    def flush(self) -> bytes:
        pending, self._pending = self._pending, b""
        return pending


def _partial_suffix(window: bytes) -> int:
    """How many trailing bytes are a proper prefix (of length ≥ 2) of `\\ndata: [DONE]`, minus the LF."""
    for length in range(len(DONE_LINE) - 1, 1, -1):
        if window.endswith(DONE_LINE[:length]):
            return length - 1
    return 0


def error_event(message: str, code: str) -> bytes:
    return b"data: " + orjson.dumps(envelope(message, type="upstream_error", code=code)) + b"\n\n"


class StreamRelayResponse(Response):
    def __init__(
        self,
        upstream: UpstreamResponse,
        *,
        usage: UsageWatch,
        conversation_event: bytes | None,
        keep_bytes: bool,
        on_done: OnDone,
        commit: Commit | None = None,
    ) -> None:
        super().__init__(status_code=200)
        self.upstream = upstream
        self.commit = commit
        self.usage = usage
        self.splicer = DoneSplicer(
            lambda: usage.missing_usage_event() + (conversation_event or b""), hold_done=commit is not None
        )
        self.chunks: list[bytes] | None = [] if keep_bytes or commit is not None else None
        self.on_done = on_done
        # Set once `data: [DONE]` went out: from then on the client has the whole completion, even
        # if it hangs up before the upstream closes its end.
        self.done_sent = False
        self.stored = False  # `commit` succeeded: the turn is in the conversation
        self.finished = False  # the body's last message went out (with `[DONE]`)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        outcome: RelayOutcome | None = "client_disconnected"
        watch = _HangUpWatch(receive)
        try:
            headers = [*SSE_HEADERS, *((k, v) for k, v in self.raw_headers if k != b"content-length")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            outcome = await self._relay(send, watch)
            if not self.finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            outcome = "client_disconnected"
        except asyncio.CancelledError:
            if not watch.absorb_cancellation():
                raise
        finally:
            watch.stop()
            self.upstream.close()
            self.on_done(self.chunks, None if self.done_sent or self.stored else outcome)

    async def _relay(self, send: Send, watch: _HangUpWatch) -> RelayOutcome | None:
        tail = b""
        try:
            async for chunk in self.upstream.chunks():
                self.usage.feed(chunk)
                tail = (tail + chunk)[-32:] if len(chunk) < 32 else chunk[-32:]
                out = self.splicer.feed(chunk)
                if self.chunks is not None:
                    self.chunks.append(out)
                if out:
                    # `[DONE]` is in `out` unless held back until the turn is stored (`commit`).
                    done = self.commit is None and tail.rstrip().endswith(b"data: [DONE]")
                    # When the model's answer has ended too, `[DONE]` ends the body: one write, not two.
                    last = done and self.upstream.ended()
                    await send({"type": "http.response.body", "body": out, "more_body": not last})
                    self.done_sent = self.done_sent or done
                    self.finished = last
                if self.splicer.hold_done and self.splicer.done:
                    failed = await self._acknowledge(send, watch)
                    if failed:
                        return failed
        except StreamBroken as broken:
            if self.done_sent:
                return None
            return await self._fail(send, broken.message, broken.code)
        if not self.done_sent:
            return await self._fail(
                send, "The model ended the stream before it was complete.", "upstream_incomplete"
            )
        return None

    async def _acknowledge(self, send: Send, watch: _HangUpWatch) -> RelayOutcome | None:
        """The model is done: store the turn, then send `[DONE]` (or an error event instead)."""
        assert self.commit is not None and self.chunks is not None
        self.splicer.hold_done = False  # whatever follows goes straight through
        try:
            # The client may hang up now; the completion is whole, so it is stored all the same.
            with watch.shielded():
                await self.commit(self.chunks)
        except Exception as exc:
            error = exc if isinstance(exc, APIError) else None
            if error is None:
                log.exception("storing a streamed turn failed")
                error = APIError(500, "The completion could not be stored.", code="storage_failed")
            event = b"data: " + orjson.dumps(error.body()) + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
            return "storage_failed"
        self.stored = True
        # The commit took a round trip, so the model has usually closed its stream by now: then
        # `[DONE]` and the end of the body go out as one write (one wake-up of the client, not two).
        last = self.upstream.ended()
        await send({"type": "http.response.body", "body": self.splicer.held, "more_body": not last})
        self.done_sent = True
        self.finished = last
        return None

    async def _fail(self, send: Send, message: str, code: str) -> RelayOutcome:
        pending = self.splicer.flush()
        await send(
            {"type": "http.response.body", "body": pending + error_event(message, code), "more_body": True}
        )
        return "upstream_error"


class _HangUpWatch:
    """Cancels the task relaying a stream when its client hangs up (uvicorn's `receive` answers
    `http.disconnect`), except while `shielded`: then when the shield is lifted.

    The watcher is never cancelled: once the relay has stopped it, it ends by itself, since `receive`
    answers `http.disconnect` once the response has been sent (the ASGI spec asks it of every
    server; uvicorn answers at once, on the last body message). A cancelled watcher would end
    with a `CancelledError` whose traceback holds its frame, and so the watch, the request's ASGI
    callables and its context: a reference cycle per stream, ~40 objects that only the garbage
    collector could free (a young collection every ~130 ms at 1,500 streams/s, each a pause of
    3-10 ms for every stream, and an older one of 15-20 ms every ~1.5 s).
    """

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._relay = task
        self._shielded = False
        self._stopped = False
        self._hung_up = False
        self._cancelled = False
        self._watcher = asyncio.get_running_loop().create_task(self._watch(receive), name=WATCH_TASK)

    async def _watch(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # the server can no longer tell: as good as gone
            log.exception("watching a streaming client failed")
        if self._stopped:
            return
        self._hung_up = True
        if not self._shielded:
            self._cancel()

    def _cancel(self) -> None:
        self._cancelled = True
        self._relay.cancel()

    @contextmanager
    def shielded(self) -> Iterator[None]:
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False
            if self._hung_up and not self._cancelled and not self._stopped:
                self._cancel()

    def absorb_cancellation(self) -> bool:
        """Whether a `CancelledError` the relay caught was this watch's alone (then it is spent);
        False for any other cancellation, which the relay re-raises."""
        return self._cancelled and self._relay.uncancel() == 0

    def stop(self) -> None:
        """The relay is over: a hang-up from now on is none of its business."""
        self._stopped = True
