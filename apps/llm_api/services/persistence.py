"""Writing chat turns to their conversation.

A turn the client is told about (a plain 200, a stream's `data: [DONE]`) is committed first:
`TurnWriter.commit` runs on the request, after the last content byte and before that final
acknowledgement, retrying through a short outage (`apps.common.durable`) and raising a 503 when the
database stays away. Content is never held back; only the acknowledgement waits.

A turn that ended without one (the model failed mid-stream, the client hung up) is recorded as
`incomplete` off the request: `submit` queues it for a worker, which retries for longer. When the
queue is full the turn is written by a task of its own instead of being dropped. Shutdown waits for
everything queued.

The streamed reply is reconstructed here, from the raw upstream bytes the relay kept, so the relay
itself never parses a chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from apps.common.durable import StorageUnavailable, durably
from apps.common.sse import SSEDecoder
from apps.common.storable import loads, storable
from apps.llm_api.chat_tables import FINISH_REASON_CHARS
from apps.llm_api.services.conversations import ConversationStore, NewItem
from apps.llm_api.services.items import message_to_items
from apps.llm_api.services.relay import IncompleteReason
from apps.llm_api.services.turn_store import AnyConversation, TurnRecord
from apps.llm_api.settings import TURN_FLUSHERS

log = logging.getLogger(__name__)

# Nobody waits for an unacknowledged turn, so it may wait out a longer outage than a request can.
BACKGROUND_BUDGET_SECONDS = 120.0


@dataclass
class Turn:
    """One completion to record: what was asked and what came back."""

    conversation: AnyConversation
    inputs: list[dict[str, Any]]
    title: str | None
    completion: dict[str, Any] | None = None  # a plain response, parsed
    stream_bytes: list[bytes] | None = None  # a streamed response, as relayed
    incomplete_reason: IncompleteReason | None = None  # a stream cut short: stored `incomplete`

    def record(self) -> TurnRecord:
        return TurnRecord(self.conversation, self.items(), self.title)

    def items(self) -> list[NewItem]:
        items = [NewItem(body) for message in self.inputs for body in message_to_items(message)]
        # The inputs passed the request's check (`apps.common.guard`); the reply is the model's, and
        # the client has it already: text Postgres cannot store is replaced, not refused (one such
        # turn would fail the group-committed statement holding other users' turns too).
        message, finish_reason, usage = storable(self._reply())
        if message is None:
            return items
        if finish_reason is not None:  # any string an upstream chose: cut to its column
            finish_reason = str(finish_reason)[:FINISH_REASON_CHARS]
        status = "incomplete" if self.incomplete_reason else "completed"
        details = {"reason": self.incomplete_reason} if self.incomplete_reason else None
        for index, body in enumerate(message_to_items(message)):
            first = index == 0
            items.append(
                NewItem(
                    body,
                    status=status,
                    finish_reason=finish_reason if first else None,
                    usage=usage if first else None,
                    incomplete_details=details if first else None,
                )
            )
        return items

    def _reply(self) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
        if self.completion is not None:  # any JSON object the model sent
            choices = self.completion.get("choices")
            choice = choices[0] if isinstance(choices, list) and choices else None
            if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
                return None, None, None
            # A completion's message is the assistant's whatever role the server wrote (or left out).
            message = {**choice["message"], "role": "assistant"}
            return message, choice.get("finish_reason"), self.completion.get("usage")
        if self.stream_bytes is not None:
            return accumulate_stream(self.stream_bytes)
        return None, None, None


def accumulate_stream(chunks: list[bytes]) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """Choice 0 of a streamed completion rebuilt from its SSE bytes: message, finish reason, usage."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    for data in event_data(chunks):
        if data == b"[DONE]" or data == "[DONE]":
            break
        chunk = _json_or_none(data)
        if not isinstance(chunk, dict):
            continue
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                _merge_call(calls, call)
            finish_reason = choice.get("finish_reason") or finish_reason
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message, finish_reason, usage


def event_data(chunks: list[bytes]) -> list[bytes | str]:
    """The data of every event of a relayed stream, in order, as the SSE decoder would give them.

    A model's stream is almost always one `data:` line per event with LF line ends: that shape is
    split with bytes methods (the decoder, a line at a time in Python, was ~70 µs of an 8-chunk
    turn's CPU). Anything else (CR line ends, comments, named events, ids, multi-line data) goes
    through the decoder. The fast split gives bytes (orjson reads them as they are), the decoder text."""
    raw = b"".join(chunks)
    if b"\r" not in raw:
        found: list[bytes | str] = []
        for block in raw.split(b"\n\n"):
            if not block:
                continue
            if b"\n" in block or not block.startswith(b"data:"):
                break
            found.append(block[6:] if block.startswith(b"data: ") else block[5:])
        else:
            return found
    decoder = SSEDecoder()
    events = decoder.feed(raw)
    events.extend(decoder.flush())
    return [event.data for event in events]


def _json_or_none(data: bytes | str) -> Any:
    try:
        return loads(data)  # an unpaired surrogate escape is replaced in `Turn.items`
    except ValueError:
        if isinstance(data, bytes):  # the decoder would have replaced invalid UTF-8, then parsed
            return _json_or_none(data.decode("utf-8", "replace"))
        return None


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    call = calls.setdefault(
        int(delta.get("index", 0)), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] += function["name"]
    if function.get("arguments"):
        call["function"]["arguments"] += function["arguments"]


@dataclass
class TurnWriter:
    """Commits acknowledged turns in groups, and records unacknowledged ones in the background.

    Group commit: `commit` puts its turn in `_pending`; a flusher writes what is pending in one
    transaction (`ConversationStore.record_turns`), then wakes each waiter, and goes on with what
    arrived meanwhile. Under load a batch holds every turn that finished during the previous commit,
    so the number of transactions, round trips and connection checkouts per second stays flat while
    turns per second grow; alone, a turn is written at once as before. Every waiter is answered only
    after the transaction holding its turn committed. When a batch fails for a reason retrying cannot
    fix (one turn's data), its turns are written one by one, so only the bad turn is refused.

    Up to `flushers` batches are written at once: with one, a turn that finished just after a batch
    left waited for that whole commit and then for its own (`bench/closed_loop.py` measured llm-api
    at a quarter to half a core while conversation turns queued so). Order within a conversation
    holds because a conversation is in at most one batch in flight: a turn of a conversation being
    written stays pending, behind it, until that batch is settled. Batches in flight therefore touch
    disjoint conversations, so they neither wait on each other's row locks nor clash on numbering.
    """

    store: ConversationStore
    queue_size: int = 1000
    budget: float = 10.0  # retry budget of a turn the client waits for (`storage_retry_seconds`)
    background_budget: float = BACKGROUND_BUDGET_SECONDS
    max_batch: int = 64
    flushers: int = TURN_FLUSHERS
    _queue: asyncio.Queue[Turn] = field(init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)
    _overflow: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _pending: list[tuple[TurnRecord, asyncio.Future[None]]] = field(default_factory=list, init=False)
    _flushing: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _writing: set[str] = field(default_factory=set, init=False)  # conversations in a batch in flight

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="turn-writer")

    async def commit(self, turn: Turn) -> None:
        """Store a turn before the client is told it is done; `StorageUnavailable` if impossible."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)  # its waiter may have gone: the outcome is not an orphan
        self._pending.append((turn.record(), done))
        if len(self._flushing) < self.flushers:
            task = asyncio.create_task(self._flush(), name="turn-group-commit")
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)  # cancelled before it ever ran
        # A client that hangs up cancels only its wait (the turn stays in its batch, `_settle` skips
        # a cancelled waiter): no shield, whose extra future would cost the acknowledgement a loop turn.
        await done

    def _take(self) -> list[tuple[TurnRecord, asyncio.Future[None]]]:
        """The next batch, oldest first, without any conversation already in a batch in flight
        (those turns stay pending, in order); its conversations are marked as being written."""
        batch: list[tuple[TurnRecord, asyncio.Future[None]]] = []
        rest: list[tuple[TurnRecord, asyncio.Future[None]]] = []
        for entry in self._pending:
            if len(batch) < self.max_batch and entry[0].conversation.public_id not in self._writing:
                batch.append(entry)
            else:
                rest.append(entry)
        # Marked only now, so two turns of one conversation arriving together share the batch.
        self._writing.update(record.conversation.public_id for record, _ in batch)
        self._pending = rest
        return batch

    async def _flush(self) -> None:
        try:
            while batch := self._take():
                try:
                    await self._write_batch(batch)
                finally:
                    self._writing.difference_update(record.conversation.public_id for record, _ in batch)
        finally:
            # Leaves the count in the same step as its last look at `_pending` (not in a done
            # callback, one loop turn later), so a turn pending now always finds a flusher to start.
            task = asyncio.current_task()
            assert task is not None
            self._flushing.discard(task)

    async def _write_batch(self, batch: list[tuple[TurnRecord, asyncio.Future[None]]]) -> None:
        try:
            await self._write([record for record, _ in batch], self.budget)
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, StorageUnavailable):
                _settle(batch, exc)
                return
            for one in batch:  # a bad turn must not take the others down with it
                try:
                    await self._write([one[0]], self.budget)
                except Exception as single:
                    _settle([one], single)
                else:
                    _settle([one], None)
        else:
            _settle(batch, None)

    def has_room(self) -> bool:
        """Whether the background backlog is under `queue_size`; a new turn is refused (503) when not.

        A submitted turn is never dropped (past the queue it is written by a task of its own), so the
        bound is kept by refusing new conversation turns up front (a full backlog means the database
        is not keeping up); what overflows is then at most the requests admitted at once.
        """
        return self._queue.qsize() + len(self._overflow) < self.queue_size

    def submit(self, turn: Turn) -> None:
        """Record an unacknowledged (incomplete) turn in the background."""
        try:
            self._queue.put_nowait(turn)
        except asyncio.QueueFull:
            task = asyncio.create_task(self.write(turn))
            self._overflow.add(task)
            task.add_done_callback(self._overflow.discard)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._queue.join()
        if self._overflow:
            await asyncio.gather(*self._overflow, return_exceptions=True)

    async def stop(self) -> None:
        await self.drain()
        while running := [task for task in self._flushing if not task.done()]:
            await asyncio.gather(*running, return_exceptions=True)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        while True:
            turn = await self._queue.get()
            try:
                await self.write(turn)
            finally:
                self._queue.task_done()

    async def write(self, turn: Turn) -> None:
        """Background write: retried for `background_budget`, then logged (never raised)."""
        try:
            await self._write([turn.record()], self.background_budget)
        except Exception as exc:  # a failed background write must not stop the writer
            log.error(
                "storing an unacknowledged turn failed",
                extra={"conversation": turn.conversation.public_id, "error": repr(exc)},
            )

    async def _write(self, records: list[TurnRecord], budget: float) -> None:
        async def write() -> None:
            await self.store.record_turns(records)

        # One transaction: if any of its items is stored, all of them are. Each turn's first item is
        # asked for, since a turn whose conversation was deleted meanwhile stores nothing.
        firsts = [record.items[0].public_id for record in records if record.items]

        async def committed() -> bool:
            return bool(firsts) and await self.store.has_any_item(firsts)

        await durably(write, budget=budget, what="this conversation turn", committed=committed)


def _retrieved(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


def _settle(batch: list[tuple[TurnRecord, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
