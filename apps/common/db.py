"""Async SQLAlchemy helpers: one engine per app, pinned to the app's own schema.

Each app owns one Postgres schema (`llm_api`, `media_api`, …). The engine sets `search_path` on every
connection, so models are written without a schema and the same tables can live in any database.
`postgresql://` URLs are accepted and switched to the asyncpg driver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
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
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"search_path": f"{schema},public"}, "command_timeout": 30},
    )


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
