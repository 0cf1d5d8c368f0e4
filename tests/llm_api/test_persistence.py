"""The turn writer: retries a failing store, never drops a turn when its queue is full, drains on stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apps.llm_api.services import persistence
from apps.llm_api.services.conversations import NewItem
from apps.llm_api.services.persistence import Turn, TurnWriter


class FlakyStore:
    """Fails the first `failures` writes, then records them."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.failures = failures
        self.delay = delay
        self.written: list[tuple[int, list[NewItem], str | None]] = []

    async def record_turn(self, conversation_id: int, items: list[NewItem], *, title: str | None) -> None:
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        self.written.append((conversation_id, items, title))


def turn(number: int) -> Turn:
    completion: dict[str, Any] = {
        "choices": [
            {"message": {"role": "assistant", "content": f"answer {number}"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    return Turn(number, [{"role": "user", "content": f"question {number}"}], "t", completion=completion)


def writer_for(store: FlakyStore, queue_size: int = 1000) -> TurnWriter:
    return TurnWriter(store, queue_size)  # type: ignore[arg-type]  # duck-typed ConversationStore


async def test_failed_writes_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persistence, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    store = FlakyStore(failures=2)
    writer = writer_for(store)
    writer.start()
    writer.submit(turn(1))
    await writer.stop()
    [(conversation_id, items, _)] = store.written
    assert conversation_id == 1
    assert [i.body["role"] for i in items] == ["user", "assistant"]
    assert items[1].usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


async def test_a_full_queue_still_writes_everything() -> None:
    store = FlakyStore(delay=0.001)
    writer = writer_for(store, queue_size=2)
    writer.start()
    for number in range(20):
        writer.submit(turn(number))
    await writer.stop()
    assert sorted(c for c, _, _ in store.written) == list(range(20))


async def test_the_backlog_bound_is_reported_so_new_turns_can_be_refused() -> None:
    store = FlakyStore(delay=0.05)
    writer = writer_for(store, queue_size=3)
    assert writer.has_room()
    for number in range(5):  # past the bound: nothing acknowledged is dropped ...
        writer.submit(turn(number))
    assert not writer.has_room()  # ... but the chat route refuses new turns until it drains
    writer.start()
    await writer.stop()
    assert writer.has_room()
    assert sorted(c for c, _, _ in store.written) == list(range(5))
