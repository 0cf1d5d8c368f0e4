"""Async SQLAlchemy helpers: one engine per app, pinned to the app's own schema.

Each app owns one Postgres schema (`llm_api`, `media_api`, …). The engine sets `search_path` on every
connection, so models are written without a schema and the same tables can live in any database.
`postgresql://` URLs are accepted and switched to the asyncpg driver.

A connection is checked before use without a round trip: `pool_pre_ping` cost one `SELECT` per
checkout, on every hot path. Instead, a checkout drops a connection asyncpg already knows is closed
(the server shut down or restarted: it closes the socket, and the event loop notices), and a
statement that fails on a connection lost meanwhile makes SQLAlchemy invalidate the whole pool, so
at most one attempt meets a dead connection; the writes that back an acknowledgement retry it
(apps.common.durable).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import greenlet_spawn

from apps.common.health import ReadinessCheck

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    """Declarative base for kit-level tables; each app declares its own base with `new_metadata()`."""

    metadata = new_metadata()


def async_url(url: str) -> str:
    """The same database URL with the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    schema: str,
    pool_size: int = 10,
    max_overflow: int = 10,
    plan_cache_mode: str | None = None,
) -> AsyncEngine:
    server_settings = {"search_path": f"{schema},public"}
    if plan_cache_mode is not None:
        server_settings["plan_cache_mode"] = plan_cache_mode
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # Most recently returned first: a pool sized for the largest burst (llm-api's) then keeps
        # reusing the few connections steady load needs, whose statements are already prepared and
        # planned, instead of cycling through all of them. The ones at the bottom may then idle up to
        # `pool_recycle`: fine where nothing between the app and Postgres drops idle connections
        # silently (a server-side close is caught by `_drop_closed`); behind such a hop, set its idle
        # timeout above the recycle.
        pool_use_lifo=True,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings, "command_timeout": 30},
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    return engine


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection whose socket is already closed; the pool then opens a new one."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the database closed this connection")


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """The pool's asyncpg connection itself, for a hot path's hand-written statements.

    SQLAlchemy's async execution layer (a `Connection` with its traced connect, the greenlet hop,
    the compiled-statement cache, result objects, the adapter's BEGIN) costs ~250 µs of CPU per
    statement; asyncpg alone ~40 µs (`bench.chat_cpu`). The connection is still the pool's, with
    the engine's codecs and `search_path`, checked on checkout like any other.

    It goes back to the pool only when it is known to be idle: after success, or after the server
    refused a statement (the caller's transaction block has rolled back). Anything else (the
    connection lost, a cancellation or timeout mid-statement) discards it. A lost connection is
    raised as SQLAlchemy's `OperationalError`, as a statement through SQLAlchemy would be: a
    database that is away, which `apps.common.durable` retries and the error handlers answer with
    a 503.
    """
    pooled = await engine.raw_connection()
    async with _using(pooled) as driver:
        yield driver
    pooled.close()  # back to the pool; no I/O, since no SQLAlchemy transaction was begun on it


@asynccontextmanager
async def _using(pooled: Any) -> AsyncIterator[asyncpg.Connection]:
    """`pooled`'s asyncpg connection; on a failure it is back in the pool or discarded (see above),
    and the caller gets it back only after success."""
    driver = pooled.driver_connection
    assert driver is not None  # a checked-out connection
    try:
        yield driver
    except BaseException as exc:
        replacement = await _after_failure(pooled, driver, exc)
        if replacement is not None:
            raise replacement from exc
        raise


async def _after_failure(pooled: Any, driver: asyncpg.Connection, exc: BaseException) -> Exception | None:
    """`pooled` back in the pool or discarded after `exc` (see `driver_connection`); the error to raise
    instead of `exc`, if any."""
    if isinstance(exc, asyncpg.PostgresError):
        if driver.is_closed():  # e.g. the server shutting down (SQLSTATE 57P01)
            await greenlet_spawn(pooled.invalidate, exc)
        else:
            await greenlet_spawn(pooled.close)
        return None
    lost = driver.is_closed()
    driver.terminate()
    await greenlet_spawn(pooled.invalidate, exc)
    if lost and isinstance(exc, Exception):
        return OperationalError(None, None, exc, connection_invalidated=True)
    return None


class HeldConnections:
    """A few pool connections a hot path keeps between its statements, handed out LIFO.

    A checkout and checkin through the pool (its greenlet hop, queue and events) cost a statement
    ~40 µs of CPU and, on a request waiting for it, ~0.13 ms (`bench/turn_cpu.py`). A connection
    used here is kept for the next statement instead; when none is idle, one is checked out as
    usual. At most `keep` are held (a share the pool is sized for); each goes back to the pool after
    `hold_seconds` (where recycling and the checkout check apply again) or after a failure (as in
    `driver_connection`). One the server closed while held is dropped before use. `release` gives
    all back.
    """

    def __init__(self, engine: AsyncEngine, keep: int, hold_seconds: float = 60.0) -> None:
        self._engine = engine
        self._keep = keep
        self._hold_seconds = hold_seconds
        self._idle: list[tuple[Any, float]] = []  # (pooled connection, when it was checked out)
        self._released = False

    def connection(self) -> _Lease:
        """A connection for one statement or a few (`async with`); kept afterwards when all went well."""
        return _Lease(self)

    async def _take(self) -> tuple[Any, float]:
        while self._idle:
            pooled, since = self._idle.pop()
            if not pooled.driver_connection.is_closed():
                return pooled, since
            await greenlet_spawn(pooled.invalidate)
        return await self._engine.raw_connection(), time.monotonic()

    def _give_back(self, pooled: Any, since: float) -> None:
        # After `release` (shutdown), a statement still running gives its connection back: kept, it
        # would stay checked out past the engine's disposal.
        if (
            not self._released
            and len(self._idle) < self._keep
            and time.monotonic() - since < self._hold_seconds
        ):
            self._idle.append((pooled, since))
        else:
            pooled.close()

    def release(self) -> None:
        """Every held connection back to the pool (before the engine is disposed); none kept after."""
        self._released = True
        idle, self._idle = self._idle, []
        for pooled, _ in idle:
            pooled.close()


class _Lease:
    """One use of a `HeldConnections` connection: `_using`'s rules, as a plain class.

    The turn path takes one per statement (two per conversation turn). Two generator-based context
    managers (a lease, then `_using`) cost 4-8 µs of CPU per use in a warm loop where this costs
    1.5-2.5; py-spy put them at ~40 µs per conversation request in a served llm-api."""

    __slots__ = ("_driver", "_held", "_pooled", "_since")

    def __init__(self, held: HeldConnections) -> None:
        self._held = held

    async def __aenter__(self) -> asyncpg.Connection:
        self._pooled, self._since = await self._held._take()
        driver = self._pooled.driver_connection
        assert driver is not None  # a checked-out connection
        self._driver: asyncpg.Connection = driver
        return driver

    async def __aexit__(self, _type: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if exc is None:
            self._held._give_back(self._pooled, self._since)
            return
        replacement = await _after_failure(self._pooled, self._driver, exc)
        if replacement is not None:
            raise replacement from exc


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose transaction commits on success and rolls back on error."""
    async with factory() as session, session.begin():
        yield session


def database_check(engine: AsyncEngine) -> ReadinessCheck:
    """A readiness check that runs `select 1`."""

    async def check() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("select 1"))

    return check
