"""Resumable streams: the event log of a streamed background response, and its followers.

OpenAI's background streaming: a response created with `background: true, stream: true` can be
streamed again, from any replica, with `GET /v1/responses/{id}?stream=true&starting_after=N`: the
events after sequence number N are replayed, then followed live until the response ends.

Writer (`EventLog`, one per such response, on the replica running it). Every event goes to the
live stream at once, as before; it is also queued here and written in batches: a flusher task
wakes on the first queued event, lingers `EVENT_LOG_FLUSH_SECONDS` so a burst of tokens becomes one
statement, and writes everything queued (one multi-row insert that also `NOTIFY`s the followers).
Content therefore never waits for a commit. A batch that fails stays queued and goes with the next
one; inserts ignore rows already stored, so a batch whose commit answer was lost can be sent again.
The terminal event is different: it is the acknowledgement, so it is written with the response's
final state, in the final transaction (`ResponseStore.save`), and sent only after that commit.

Reader (`follow`): one statement reads the response's status and the events after the cursor from
the same snapshot. The final transaction writes the last events and the ending status together,
so "ended, and nothing after the cursor" means the stream is complete: no gap, no duplicate.
Otherwise the follower waits for the replica's `NOTIFY` listener to wake it (`EventHub`), or at
most `STREAM_FOLLOW_QUIET_SECONDS` in case a notice was missed while the listener reconnected. A cancelled
response ends its stream when it is marked cancelled (it has no terminal event); a response whose
replica died ends when the orphan sweeper fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

PAGE = 500

Frame = tuple[int, bytes]


class EventLog:
    """The queued, not yet stored events of one response, and the task that writes them."""

    def __init__(self, write: Callable[[list[Frame]], Awaitable[None]], linger: float) -> None:
        self._write = write
        self._linger = linger
        self._pending: list[Frame] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def append(self, sequence_number: int, frame: bytes) -> None:
        self._pending.append((sequence_number, frame))
        if self._task is None:
            self._task = asyncio.create_task(self._flush_forever(), name="response event log")
        self._wake.set()

    async def _flush_forever(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger if not failures else min(2.0, 0.1 * 2**failures))
            self._wake.clear()
            batch = list(self._pending)
            try:
                await self._write(batch)
            except Exception as exc:  # kept queued: the next batch or the final write takes it
                failures += 1
                self._wake.set()
                log.warning("writing response events failed", extra={"error": repr(exc)})
            else:
                failures = 0
                del self._pending[: len(batch)]

    async def close(self) -> list[Frame]:
        """Stop the flusher; the events it has not stored, for the final transaction."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        pending, self._pending = self._pending, []
        return pending


class EventHub:
    """Followers on this replica, woken by `notified(response_id)` (the `NOTIFY` listener)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def notified(self, response_id: str) -> None:
        for waiter in self._waiters.get(response_id, ()):
            waiter.set()

    @contextmanager
    def subscribe(self, response_id: str) -> Iterator[asyncio.Event]:
        waiter = asyncio.Event()
        self._waiters.setdefault(response_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(response_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[response_id]


# (ended, events after the cursor, at most `limit` of them), read in one snapshot.
ReadAfter = Callable[[int, int], Awaitable[tuple[bool, list[Frame]]]]


async def follow(
    hub: EventHub, response_id: str, after: int, read: ReadAfter, *, quiet: float
) -> AsyncIterator[bytes]:
    """The stored frames after `after`, then the new ones as they are stored, until the end."""
    with hub.subscribe(response_id) as waiter:
        while True:
            waiter.clear()  # before reading: a notice that lands during the read wakes the next wait
            ended, frames = await read(after, PAGE)
            for sequence_number, frame in frames:
                yield frame
                after = sequence_number
            if len(frames) == PAGE:
                continue
            if ended:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(quiet):
                    await waiter.wait()
