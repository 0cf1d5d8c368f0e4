"""Identifier helpers.

`jan_<snowflake>` ids are 64-bit, time ordered and rendered in decimal:

    | 41 bits: ms since JAN_EPOCH | 10 bits: worker id | 12 bits: sequence |

Within one millisecond the sequence counts up; when it overflows the generator waits for the next
millisecond. If the wall clock steps backwards the generator keeps issuing ids from the last millisecond
it saw (and waits once the sequence is spent), so ids stay monotonic per worker.

Worker ids are leased in Postgres (`WorkerLease`), so replicas never share one without anybody having
to configure them: a lease row per worker id in the minting app's own schema, taken under an advisory
lock, renewed by a heartbeat and given back at shutdown. A replica stops minting when its lease may have
run out (its local deadline is counted from before the database's `now()`, so it always ends first),
and a replica that takes over a lapsed worker id starts its clock after the previous holder's expiry,
so the two never issue the same millisecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import string
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, SmallInteger, String, Table, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.functions import Function

log = logging.getLogger(__name__)

JAN_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1

_ALPHABET = string.ascii_letters + string.digits
_BASE = len(_ALPHABET)
_UNBIASED = 256 - 256 % _BASE
_TO_CHARACTER = bytes(ord(_ALPHABET[byte % _BASE]) for byte in range(256))
_BIASED = bytes(range(_UNBIASED, 256))


class SnowflakeGenerator:
    """Thread-safe generator of 64-bit time-ordered ids for one worker."""

    def __init__(
        self, worker_id: int, *, clock_ms: Callable[[], int] | None = None, not_before_ms: int = 0
    ) -> None:
        """`not_before_ms` (unix ms): no id is issued with an earlier timestamp (a taken-over worker id)."""
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ValueError(f"worker id must be between 0 and {MAX_WORKER_ID}, got {worker_id}")
        self._worker_id = worker_id
        self._clock = clock_ms or _now_ms
        self._lock = threading.Lock()
        self._last_ms = max(-1, not_before_ms - JAN_EPOCH_MS)
        self._sequence = 0

    @property
    def worker_id(self) -> int:
        return self._worker_id

    def next_int(self) -> int:
        with self._lock:
            now = max(int(self._clock()) - JAN_EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:
                    now = self._wait_past(self._last_ms)
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                (now << (WORKER_BITS + SEQUENCE_BITS)) | (self._worker_id << SEQUENCE_BITS) | self._sequence
            )

    def next_id(self) -> str:
        return jan_id(self.next_int())

    def _wait_past(self, last_ms: int) -> int:
        while True:
            now = int(self._clock()) - JAN_EPOCH_MS
            if now > last_ms:
                return now
            time.sleep(0.0001)


def snowflake_timestamp_ms(value: int) -> int:
    """Unix time in milliseconds at which a snowflake was issued."""
    return (value >> (WORKER_BITS + SEQUENCE_BITS)) + JAN_EPOCH_MS


def jan_id(value: int) -> str:
    """The public form of a snowflake: `jan_<decimal>`."""
    return f"jan_{value}"


def parse_jan_id(value: str) -> int | None:
    """The integer inside a `jan_<decimal>` id, or None when the text is not one."""
    prefix, _, digits = value.partition("_")
    if prefix != "jan" or not digits.isdigit() or len(digits) > 20:
        return None
    number = int(digits)
    return number if number < (1 << 63) else None


def random_id(prefix: str, length: int = 24) -> str:
    """An opaque, unguessable id such as `conv_…`, `msg_…` or `resp_…`."""
    # One read of the OS's random source per id, mapped to characters by one `bytes.translate`
    # (a character per byte in Python was 6.6 µs an id, three ids per conversation turn; this 2.3).
    # Bytes from 248 up are dropped so every character stays equally likely (248 = 4 x 62).
    chars = b""
    while len(chars) < length:
        chars += secrets.token_bytes(2 * length).translate(_TO_CHARACTER, _BIASED)
    return f"{prefix}_{chars[:length].decode()}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class WorkerLeaseLost(Exception):
    """This process may no longer hold its worker id, so it must not mint until it has one again."""


def worker_lease_table(metadata: MetaData) -> Table:
    """The lease table, declared in the minting app's metadata so its own migrations create it."""
    return Table(
        "worker_leases",
        metadata,
        Column("worker_id", SmallInteger, primary_key=True, autoincrement=False),
        Column("holder", String(128), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )


def _holder_name() -> str:
    # The pod name (the host name in Kubernetes) makes a lease row traceable to its replica.
    return f"{socket.gethostname()[:80]}/{os.getpid()}/{secrets.token_hex(4)}"


class WorkerLease:
    """A worker id leased from Postgres, and the snowflake generator that goes with it.

    `start()` takes the lowest worker id that is free (never leased, or lapsed), `run()` renews it
    every third of the TTL, `stop()` gives it back (expiring it now, which keeps the row as the floor
    for the next holder's clock). `next_int()` refuses with `WorkerLeaseLost` once the local deadline
    has passed without a renewal; `run()` then takes a new lease.
    """

    def __init__(self, engine: AsyncEngine, table: Table, *, ttl_seconds: float = 30.0) -> None:
        self._engine = engine
        self._table = table
        self._ttl = ttl_seconds
        self.holder = _holder_name()
        self._generator: SnowflakeGenerator | None = None
        self._deadline = 0.0  # time.monotonic() after which the lease may belong to someone else

    @property
    def worker_id(self) -> int | None:
        return self._generator.worker_id if self._generator else None

    def next_int(self) -> int:
        generator = self._generator
        if generator is None or time.monotonic() >= self._deadline:
            raise WorkerLeaseLost("no worker id is leased right now")
        return generator.next_int()

    def next_id(self) -> str:
        return jan_id(self.next_int())

    async def start(self) -> int:
        leases = self._table
        started = time.monotonic()
        async with self._engine.begin() as connection:
            # One taker at a time per table: the choice below reads, then writes.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": self._lock_name}
            )
            rows = (await connection.execute(select(leases.c.worker_id, leases.c.expires_at))).all()
            now = await connection.scalar(select(func.now()))
            assert isinstance(now, datetime)
            lapsed: dict[int, datetime] = {row.worker_id: row.expires_at for row in rows}
            live = {w for w, expires in lapsed.items() if expires > now}
            free = next((w for w in range(MAX_WORKER_ID + 1) if w not in live), None)
            if free is None:
                raise RuntimeError(
                    f"all {MAX_WORKER_ID + 1} worker ids are leased; is something leaking replicas?"
                )
            statement = insert(leases).values(
                worker_id=free, holder=self.holder, expires_at=func.now() + self._interval
            )
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[leases.c.worker_id],
                    set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
                )
            )
        previous = lapsed.get(free)
        floor_ms = int(previous.timestamp() * 1000) + 1 if previous is not None else 0
        self._generator = SnowflakeGenerator(free, not_before_ms=floor_ms)
        self._deadline = started + self._ttl
        log.info("worker id leased", extra={"worker_id": free, "holder": self.holder})
        return free

    async def renew(self) -> bool:
        """Extend the lease; False when it lapsed and someone else may hold the worker id now."""
        worker_id = self.worker_id
        if worker_id is None:
            return False
        leases = self._table
        started = time.monotonic()
        async with self._engine.begin() as connection:
            renewed = await connection.scalar(
                update(leases)
                .where(
                    leases.c.worker_id == worker_id,
                    leases.c.holder == self.holder,
                    leases.c.expires_at > func.now(),
                )
                .values(expires_at=func.now() + self._interval)
                .returning(leases.c.worker_id)
            )
        if renewed is None:
            self._generator = None
            return False
        self._deadline = started + self._ttl
        return True

    async def run(self) -> None:
        """Renew until cancelled; take a new worker id if this one lapsed (a long database outage)."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if not await self.renew():
                    log.warning("worker id lease lapsed; leasing a new one", extra={"holder": self.holder})
                    await self.start()
            except Exception:  # the database may be down; minting stops by itself at the deadline
                log.exception("renewing the worker id lease failed")

    @asynccontextmanager
    async def held(self) -> AsyncIterator[WorkerLease]:
        """Lease a worker id, keep it renewed while the block runs, and give it back afterwards."""
        await self.start()
        heartbeat = asyncio.create_task(self.run(), name=f"{self._table.name}-heartbeat")
        try:
            yield self
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                await self.stop()
            except Exception:  # it lapses by itself at its expiry
                log.warning("giving back the worker id lease failed", exc_info=True)

    async def stop(self) -> None:
        worker_id = self.worker_id
        self._generator = None
        if worker_id is None:
            return
        leases = self._table
        async with self._engine.begin() as connection:
            await connection.execute(
                update(leases)
                .where(leases.c.worker_id == worker_id, leases.c.holder == self.holder)
                .values(expires_at=func.now())
            )

    @property
    def _lock_name(self) -> str:
        return f"jan.{self._table.name}"

    @property
    def _interval(self) -> Function[Any]:
        return func.make_interval(0, 0, 0, 0, 0, 0, self._ttl)
