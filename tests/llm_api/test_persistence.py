"""The turn writer: a turn the client waits for is committed or refused; background turns are not dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apps.common.durable import StorageUnavailable
from apps.llm_api.chat_tables import ConversationRow
from apps.llm_api.services.conversations import NewItem
from apps.llm_api.services.persistence import Turn, TurnWriter
from apps.llm_api.services.turn_store import TurnRecord
from tests.harness.waiting import eventually_async


class FlakyStore:
    """Fails the first `failures` writes (as a database that is away does), then records them."""

    def __init__(self, failures: int = 0, delay: float = 0.0, landed: bool = False) -> None:
        self.failures = failures
        self.delay = delay
        self.landed = landed  # a failed write's commit landed anyway (the answer was lost)
        self.written: list[tuple[str, list[NewItem], str | None]] = []

    async def record_turns(self, turns: list[TurnRecord]) -> None:
        await asyncio.sleep(self.delay)
        rows = [(t.conversation.public_id, t.items, t.title) for t in turns]
        if self.failures:
            self.failures -= 1
            if self.landed:
                self.written.extend(rows)
            raise ConnectionError("database away")
        self.written.extend(rows)

    async def has_any_item(self, public_ids: list[str]) -> bool:
        return any(items[0].public_id in public_ids for _, items, _ in self.written)


def turn(number: int) -> Turn:
    completion: dict[str, Any] = {
        "choices": [
            {"message": {"role": "assistant", "content": f"answer {number}"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    conversation = ConversationRow(id=number, public_id=f"conv_{number}", user_id="u")
    return Turn(conversation, [{"role": "user", "content": f"question {number}"}], "t", completion=completion)


def writer_for(store: FlakyStore, queue_size: int = 1000, budget: float = 5.0) -> TurnWriter:
    return TurnWriter(store, queue_size, budget=budget)  # type: ignore[arg-type]  # duck-typed store


async def test_a_commit_rides_out_failures_within_its_budget() -> None:
    store = FlakyStore(failures=2)
    await writer_for(store).commit(turn(1))
    [(conversation, items, _)] = store.written
    assert conversation == "conv_1"
    assert [i.body["role"] for i in items] == ["user", "assistant"]
    assert items[1].usage == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


async def test_a_commit_past_its_budget_is_refused_not_dropped_silently() -> None:
    """Issue 11, item 1: the writer used to retry for ~4 s, log, and drop a turn the client had."""
    store = FlakyStore(failures=10**6)
    with pytest.raises(StorageUnavailable) as refused:
        await writer_for(store, budget=0.3).commit(turn(1))
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "5"}
    assert store.written == []


async def test_a_commit_whose_answer_was_lost_is_not_written_twice() -> None:
    store = FlakyStore(failures=1, landed=True)
    await writer_for(store).commit(turn(1))
    assert len(store.written) == 1


async def test_a_lost_answer_with_a_deleted_conversation_first_in_the_batch_is_not_written_twice() -> None:
    """The batch's commit landed but its answer was lost; its first turn stored nothing (its
    conversation was deleted meanwhile), so "did it land?" must look past that turn."""

    class FirstGone(FlakyStore):
        async def record_turns(self, turns: list[TurnRecord]) -> None:
            await super().record_turns([t for t in turns if t.conversation.public_id != "conv_0"])

    store = FirstGone(failures=1, landed=True)
    writer = writer_for(store)
    await asyncio.gather(writer.commit(turn(0)), writer.commit(turn(1)))
    assert [conversation for conversation, _, _ in store.written] == ["conv_1"]


async def test_a_data_error_is_not_retried() -> None:
    class BadData(FlakyStore):
        calls = 0

        async def record_turns(self, turns: list[TurnRecord]) -> None:
            self.calls += 1
            raise ValueError("not storable")

    store = BadData()
    with pytest.raises(ValueError, match="not storable"):
        await writer_for(store).commit(turn(1))
    assert store.calls == 1


async def test_background_writes_are_retried() -> None:
    store = FlakyStore(failures=2)
    writer = writer_for(store)
    writer.start()
    writer.submit(turn(1))
    await writer.stop()
    assert [conversation for conversation, _, _ in store.written] == ["conv_1"]


async def test_a_full_queue_still_writes_everything() -> None:
    store = FlakyStore(delay=0.001)
    writer = writer_for(store, queue_size=2)
    writer.start()
    for number in range(20):
        writer.submit(turn(number))
    await writer.stop()
    assert sorted(int(c.removeprefix("conv_")) for c, _, _ in store.written) == list(range(20))


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
    assert sorted(int(c.removeprefix("conv_")) for c, _, _ in store.written) == list(range(5))


async def test_turns_committed_together_share_one_transaction_and_each_is_acknowledged() -> None:
    store = FlakyStore(delay=0.01)
    batches: list[int] = []
    record = store.record_turns

    async def counting(turns: list[TurnRecord]) -> None:
        batches.append(len(turns))
        await record(turns)

    store.record_turns = counting  # type: ignore[method-assign]
    writer = writer_for(store)
    await asyncio.gather(*(writer.commit(turn(number)) for number in range(10)))
    assert sorted(int(c.removeprefix("conv_")) for c, _, _ in store.written) == list(range(10))
    assert sum(batches) == 10 and len(batches) < 10  # turns that arrived together rode together


async def test_one_unstorable_turn_in_a_batch_fails_alone() -> None:
    class OneBad(FlakyStore):
        async def record_turns(self, turns: list[TurnRecord]) -> None:
            if any(t.conversation.public_id == "conv_3" for t in turns):
                raise ValueError("not storable")
            await super().record_turns(turns)

    store = OneBad(delay=0.01)
    writer = writer_for(store)
    outcomes = await asyncio.gather(*(writer.commit(turn(n)) for n in range(6)), return_exceptions=True)
    assert [isinstance(o, ValueError) for o in outcomes] == [n == 3 for n in range(6)]
    assert sorted(int(c.removeprefix("conv_")) for c, _, _ in store.written) == [0, 1, 2, 4, 5]


def turn_of(conversation: int, number: int) -> Turn:
    """Turn `number` of conversation `conversation` (its question says which)."""
    row = ConversationRow(id=conversation, public_id=f"conv_{conversation}", user_id="u")
    return Turn(row, [{"role": "user", "content": f"q{number}"}], None)


def question_of(items: list[NewItem]) -> str:
    text: str = items[0].body["content"][0]["text"]
    return text


class Gated(FlakyStore):
    """Each write waits until the test opens its gate; records what is in flight and what committed."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: list[asyncio.Event] = []
        self.in_flight: list[list[str]] = []  # each write's turns, by question, while it runs
        self.committed: set[str] = set()
        self.most_at_once = 0

    async def record_turns(self, turns: list[TurnRecord]) -> None:
        questions = [question_of(t.items) for t in turns]
        conversations = [t.conversation.public_id for t in turns]
        busy = {c for batch in self.in_flight for c in batch}
        assert not busy & set(conversations), "one conversation in two batches in flight"
        gate = asyncio.Event()
        self.gates.append(gate)
        self.in_flight.append(conversations)
        self.most_at_once = max(self.most_at_once, len(self.in_flight))
        try:
            await gate.wait()
            self.written.extend((t.conversation.public_id, t.items, t.title) for t in turns)
            self.committed.update(questions)
        finally:
            self.in_flight.remove(conversations)


async def test_a_turn_arriving_during_a_commit_is_written_beside_it_not_after_it() -> None:
    store = Gated()
    writer = writer_for(store)
    first = asyncio.create_task(writer.commit(turn_of(1, 1)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.create_task(writer.commit(turn_of(2, 1)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.in_flight == [["conv_1"], ["conv_2"]]  # the second batch did not wait for the first
    store.gates[1].set()
    await second
    assert not first.done()  # acknowledged by its own commit, not the other's
    store.gates[0].set()
    await first
    await writer.stop()


async def test_a_conversation_being_written_keeps_its_next_turn_behind_it() -> None:
    store = Gated()
    writer = writer_for(store)
    first = asyncio.create_task(writer.commit(turn_of(1, 1)))
    await asyncio.sleep(0)
    later = [asyncio.create_task(writer.commit(t)) for t in (turn_of(1, 2), turn_of(2, 1))]
    for _ in range(5):
        await asyncio.sleep(0)
    # The second flusher took conversation 2's turn only; conversation 1's next turn waits.
    assert store.in_flight == [["conv_1"], ["conv_2"]]
    store.gates[1].set()
    await later[1]
    assert not later[0].done()
    store.gates[0].set()
    await first
    for _ in range(5):
        await asyncio.sleep(0)
    store.gates[2].set()
    await later[0]
    assert [(c, question_of(items)) for c, items, _ in store.written] == [
        ("conv_2", "q1"),
        ("conv_1", "q1"),
        ("conv_1", "q2"),
    ]
    await writer.stop()


async def test_overlapping_batches_keep_each_conversation_in_order_and_ack_after_commit() -> None:
    store = Gated()
    writer = writer_for(store)
    acks: list[str] = []

    async def commit(conversation: int, number: int) -> None:
        await writer.commit(turn_of(conversation, number))
        question = f"q{number}"
        key = f"conv_{conversation}"
        assert (key, question) in [(c, question_of(items)) for c, items, _ in store.written]
        acks.append(f"{key}/{question}")

    async def open_gates() -> None:  # the commits finish in an order of their own, not the batches'
        opened = 0
        while True:
            await asyncio.sleep(0)
            waiting = [g for g in store.gates if not g.is_set()]
            if waiting:
                waiting[-1 if opened % 2 else 0].set()
                opened += 1

    opener = asyncio.create_task(open_gates())
    tasks = []
    for number in range(1, 6):  # each conversation's turns are committed in number order
        for conversation in range(4):
            tasks.append(asyncio.create_task(commit(conversation, number)))
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    opener.cancel()
    await writer.stop()
    assert store.most_at_once == 2
    for conversation in range(4):
        stored = [question_of(items) for c, items, _ in store.written if c == f"conv_{conversation}"]
        assert stored == [f"q{n}" for n in range(1, 6)]
    assert len(acks) == 20


async def test_a_waiter_that_goes_away_leaves_its_turn_in_the_batch_and_the_others_acknowledged() -> None:
    """A request cancelled while its turn is being committed (the client hung up) does not take the
    turn out of the batch, nor disturb the acknowledgement of the turns written beside it."""
    store = Gated()
    writer = writer_for(store)
    first = asyncio.create_task(writer.commit(turn_of(0, 1)))
    await eventually_async(lambda: len(store.gates) == 1, "the first batch is being written")
    leaving = asyncio.create_task(writer.commit(turn_of(1, 1)))
    staying = asyncio.create_task(writer.commit(turn_of(2, 1)))
    await eventually_async(lambda: len(store.gates) == 2, "the second batch is being written")
    leaving.cancel()
    for gate in store.gates:
        gate.set()
    await asyncio.gather(first, staying)
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await writer.stop()
    assert sorted(c for c, _, _ in store.written) == ["conv_0", "conv_1", "conv_2"]


def test_a_streamed_reply_with_an_unpaired_surrogate_escape_keeps_that_chunk() -> None:
    """Valid JSON that orjson refuses (`\\ud800` alone): the chunk's text is kept, the surrogate replaced."""
    chunks = [
        b'data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "a\\ud800b"}}]}\n\n',
        b'data: {"choices": [{"index": 0, "delta": {"content": "c"}, "finish_reason": "stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]
    conversation = ConversationRow(id=1, public_id="conv_1", user_id="u")
    items = Turn(conversation, [{"role": "user", "content": "q"}], None, stream_bytes=chunks).items()
    assert items[-1].body["content"][0]["text"] == "a\ufffdbc"
    assert items[-1].finish_reason == "stop"
