"""Writing completed turns to the conversation, off the token path.

The chat route hands a `Turn` to `TurnWriter.submit` once the response is finished (or cut short)
and returns at once. A worker drains a bounded queue; when the queue is full the turn is written by a
task of its own instead of being dropped, and a failed write is retried with back-off. Shutdown
waits for everything queued, so a completion the client received is not lost to a restart.

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

from apps.common.sse import SSEDecoder
from apps.llm_api.services.conversations import ConversationStore, NewItem
from apps.llm_api.services.items import message_to_items

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.2, 1.0, 3.0)


@dataclass
class Turn:
    """One completion to record: what was asked and what came back."""

    conversation_id: int
    inputs: list[dict[str, Any]]
    title: str | None
    completion: dict[str, Any] | None = None  # a plain response, parsed
    stream_bytes: list[bytes] | None = None  # a streamed response, as relayed
    incomplete_reason: str | None = None

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
    _queue: asyncio.Queue[Turn] = field(init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)
    _overflow: set[asyncio.Task[None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="turn-writer")

    def has_room(self) -> bool:
        """Whether the backlog is under `queue_size`: a new conversation turn is refused (503) when not.

        A turn already acknowledged is never dropped (past the queue it is written by a task of its
        own), so the bound is kept by refusing new turns up front; what overflows is then at most the
        requests admitted at once (`apps.common.admission`).
        """
        return self._queue.qsize() + len(self._overflow) < self.queue_size

    def submit(self, turn: Turn) -> None:
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
        try:
            items = turn.items()
        except Exception:  # a reply we cannot rebuild must not stop the writer
            log.exception("could not rebuild a completion for storage")
            return
        for delay in (*RETRY_DELAYS, None):
            try:
                await self.store.record_turn(turn.conversation_id, items, title=turn.title)
                return
            except Exception as exc:  # the database may be briefly away; try again, then give up loudly
                if delay is None:
                    log.error(
                        "storing a completion failed",
                        extra={"conversation": turn.conversation_id, "error": repr(exc)},
                    )
                    return
                await asyncio.sleep(delay)
