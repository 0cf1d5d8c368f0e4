"""Worker ids leased in Postgres: unique while held, refused once lapsed, safe to take over."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, Table, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.db import create_engine
from apps.common.ids import (
    SEQUENCE_BITS,
    WORKER_BITS,
    WorkerLease,
    WorkerLeaseLost,
    snowflake_timestamp_ms,
    worker_lease_table,
)


@pytest.fixture
async def leases(database_url: str) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    """A lease table in a schema of its own, so the session's running apps do not share it."""
    schema = f"lease_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url, schema=schema)
    table = worker_lease_table(MetaData())
    async with engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.run_sync(table.metadata.create_all)
    try:
        yield engine, table
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


async def test_concurrent_holders_get_distinct_worker_ids(leases: tuple[AsyncEngine, Table]) -> None:
    engine, table = leases
    holders = [WorkerLease(engine, table, ttl_seconds=30) for _ in range(5)]
    ids = [await holder.start() for holder in holders]
    assert sorted(ids) == [0, 1, 2, 3, 4]
    minted = [holder.next_int() for holder in holders]
    assert {(value >> SEQUENCE_BITS) & ((1 << WORKER_BITS) - 1) for value in minted} == set(ids)


async def test_a_lapsed_lease_stops_minting_and_its_successor_starts_after_it(
    leases: tuple[AsyncEngine, Table],
) -> None:
    engine, table = leases
    first = WorkerLease(engine, table, ttl_seconds=30)
    worker = await first.start()
    before = first.next_int()
    # The lease lapses in the database (say the replica was partitioned away past its TTL) ...
    async with engine.begin() as connection:
        await connection.execute(update(table).values(expires_at=text("now() - interval '1 second'")))
        expired_at = await connection.scalar(text("SELECT expires_at FROM worker_leases"))
    # ... and another replica takes the same worker id.
    second = WorkerLease(engine, table, ttl_seconds=30)
    assert await second.start() == worker
    taken_over = second.next_int()
    assert snowflake_timestamp_ms(taken_over) > int(expired_at.timestamp() * 1000)
    assert taken_over > before

    assert await first.renew() is False  # the first replica learns it lost the id ...
    with pytest.raises(WorkerLeaseLost):  # ... and refuses to mint with it
        first.next_int()


async def test_a_stopped_lease_is_given_back(leases: tuple[AsyncEngine, Table]) -> None:
    engine, table = leases
    async with WorkerLease(engine, table, ttl_seconds=30).held() as lease:
        worker = lease.worker_id
    again = WorkerLease(engine, table, ttl_seconds=30)
    assert await again.start() == worker
