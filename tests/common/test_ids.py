"""The jan_<snowflake> generator."""

from __future__ import annotations

import asyncio
import string
import threading

import pytest

from apps.common.ids import MAX_SEQUENCE, SnowflakeGenerator, parse_jan_id, random_id, snowflake_timestamp_ms


async def test_100k_ids_from_concurrent_tasks_are_unique_and_increasing() -> None:
    generator = SnowflakeGenerator(worker_id=7)
    per_task: list[list[int]] = [[] for _ in range(10)]

    async def produce(bucket: list[int]) -> None:
        for i in range(10_000):
            bucket.append(generator.next_int())
            if i % 500 == 0:
                await asyncio.sleep(0)  # interleave the tasks

    await asyncio.gather(*(produce(bucket) for bucket in per_task))
    everything = [value for bucket in per_task for value in bucket]
    assert len(set(everything)) == 100_000
    for bucket in per_task:
        assert bucket == sorted(bucket) and len(set(bucket)) == len(bucket)
    assert all((value >> 12) & 0x3FF == 7 for value in everything)


def test_ids_from_threads_are_unique() -> None:
    generator = SnowflakeGenerator(worker_id=1)
    results: list[list[int]] = [[] for _ in range(4)]

    def produce(bucket: list[int]) -> None:
        bucket.extend(generator.next_int() for _ in range(25_000))

    threads = [threading.Thread(target=produce, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for bucket in results for value in bucket]
    assert len(set(everything)) == 100_000
    assert all(bucket == sorted(bucket) for bucket in results)


def test_different_workers_never_collide_in_the_same_millisecond() -> None:
    a = SnowflakeGenerator(1, clock_ms=lambda: 1_800_000_000_000)
    b = SnowflakeGenerator(2, clock_ms=lambda: 1_800_000_000_000)
    assert {a.next_int() for _ in range(100)}.isdisjoint({b.next_int() for _ in range(100)})


def test_clock_going_backwards_keeps_ids_monotonic() -> None:
    times = iter([1_800_000_000_500, 1_800_000_000_100, 1_800_000_000_100, 1_800_000_000_600])
    generator = SnowflakeGenerator(0, clock_ms=lambda: next(times))
    values = [generator.next_int() for _ in range(3)]
    assert values == sorted(values) and len(set(values)) == 3


def test_sequence_overflow_waits_for_the_next_millisecond() -> None:
    ticks = {"now": 1_800_000_000_000, "calls": 0}

    def clock() -> int:
        ticks["calls"] += 1
        if ticks["calls"] > MAX_SEQUENCE + 5:
            ticks["now"] = 1_800_000_000_001
        return ticks["now"]

    generator = SnowflakeGenerator(0, clock_ms=clock)
    values = [generator.next_int() for _ in range(MAX_SEQUENCE + 3)]
    assert len(set(values)) == len(values) and values == sorted(values)
    assert snowflake_timestamp_ms(values[-1]) == 1_800_000_000_001


def test_rendering_and_parsing() -> None:
    generator = SnowflakeGenerator(3)
    ident = generator.next_id()
    assert ident.startswith("jan_") and ident[4:].isdigit()
    assert parse_jan_id(ident) is not None
    for bad in ("jan_", "jan_12a", "xyz_123", "jan_" + "9" * 30, "jan_-1"):
        assert parse_jan_id(bad) is None


def test_worker_id_is_bounded() -> None:
    with pytest.raises(ValueError, match="worker id"):
        SnowflakeGenerator(1024)


def test_random_ids_are_prefixed_and_distinct() -> None:
    ids = {random_id("conv") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("conv_") for i in ids)


def test_random_ids_map_each_random_byte_to_one_character_and_drop_the_biased_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bytes under 248 (4 x 62) become `ALPHABET[byte % 62]`; bytes from 248 up are dropped, so every
    character stays equally likely; when too few bytes are left, more are read."""
    alphabet = string.ascii_letters + string.digits
    reads = iter([bytes([0, 61, 62, 247, 248, 255, *range(100, 110)]), bytes(range(1, 60))])
    monkeypatch.setattr("apps.common.ids.secrets.token_bytes", lambda n: next(reads))
    expected = [alphabet[b % 62] for b in [0, 61, 62, 247, *range(100, 110), *range(1, 11)]]
    assert random_id("msg") == "msg_" + "".join(expected)
