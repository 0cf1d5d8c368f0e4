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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

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


def create_engine(url: str, *, schema: str, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        connect_args={"server_settings": {"search_path": f"{schema},public"}, "command_timeout": 30},
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    return engine


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection whose socket is already closed; the pool then opens a new one."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the database closed this connection")


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
