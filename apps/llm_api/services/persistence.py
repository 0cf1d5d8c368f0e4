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

import orjson

from apps.common.durable import durably
from apps.common.sse import SSEDecoder
from apps.llm_api.chat_tables import ConversationRow
from apps.llm_api.services.conversations import ConversationStore, NewItem
from apps.llm_api.services.items import message_to_items

log = logging.getLogger(__name__)

# Nobody waits for an unacknowledged turn, so it may wait out a longer outage than a request can.
BACKGROUND_BUDGET_SECONDS = 120.0


@dataclass
class Turn:
    """One completion to record: what was asked and what came back."""

    conversation: ConversationRow
    inputs: list[dict[str, Any]]
    title: str | None
    completion: dict[str, Any] | None = None  # a plain response, parsed
    stream_bytes: list[bytes] | None = None  # a streamed response, as relayed
    incomplete_reason: str | None = None
    new_conversation: bool = False  # not inserted yet: it goes in with this turn

    def items(self) -> list[NewItem]:
        items = [NewItem(body) for message in self.inputs for body in message_to_items(message)]
        message, finish_reason, usage = self._reply()
        if message is None:
            return items
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
        if self.completion is not None:
            choices = self.completion.get("choices") or [{}]
            return choices[0].get("message"), choices[0].get("finish_reason"), self.completion.get("usage")
        if self.stream_bytes is not None:
            return accumulate_stream(self.stream_bytes)
        return None, None, None


def accumulate_stream(chunks: list[bytes]) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """Choice 0 of a streamed completion rebuilt from its SSE bytes: message, finish reason, usage."""
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    events.extend(decoder.flush())
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    for event in events:
        if event.data == "[DONE]":
            break
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
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
    store: ConversationStore
    queue_size: int = 1000
    budget: float = 10.0  # retry budget of a turn the client waits for (`storage_retry_seconds`)
    background_budget: float = BACKGROUND_BUDGET_SECONDS
    _queue: asyncio.Queue[Turn] = field(init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)
    _overflow: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="turn-writer")

    async def commit(self, turn: Turn) -> None:
        """Store a turn before the client is told it is done; `StorageUnavailable` if impossible."""
        await self._write(turn.conversation, turn.items(), turn, self.budget)

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
            await self._write(turn.conversation, turn.items(), turn, self.background_budget)
        except Exception as exc:  # a failed background write must not stop the writer
            log.error(
                "storing an unacknowledged turn failed",
                extra={"conversation": turn.conversation.public_id, "error": repr(exc)},
            )

    async def _write(
        self, conversation: ConversationRow, items: list[NewItem], turn: Turn, budget: float
    ) -> None:
        async def write() -> None:
            await self.store.record_turn(conversation, items, title=turn.title, new=turn.new_conversation)

        async def committed() -> bool:
            return bool(items) and await self.store.has_item(items[0].public_id)

        await durably(write, budget=budget, what="this conversation turn", committed=committed)
