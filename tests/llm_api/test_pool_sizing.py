"""llm-api's database pool is sized from its admission bounds, so a burst reuses its connections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text

from apps.common.db import create_engine, driver_connection
from apps.common.settings import AdmissionSettings, ServiceSettings
from apps.llm_api.settings import TURN_FLUSHERS, UNADMITTED_CONNECTIONS, LlmApiSettings
from apps.mcp_tools.settings import McpToolsSettings
from apps.media_api.settings import MediaApiSettings
from apps.response_api.settings import ResponseApiSettings


def test_the_pool_holds_every_admitted_request_and_the_turn_flushers() -> None:
    settings = LlmApiSettings(admission=AdmissionSettings(max_concurrent=40))
    assert settings.db_pool_size == 40 + TURN_FLUSHERS
    assert settings.db_max_overflow == UNADMITTED_CONNECTIONS


def test_at_the_defaults_the_pool_holds_no_more_than_the_kits() -> None:
    """Postgres budgets sized for every app's 10 + 10 (charts, local mode) still hold."""
    settings, kit = LlmApiSettings(), ServiceSettings()
    assert settings.db_pool_size + settings.db_max_overflow <= kit.db_pool_size + kit.db_max_overflow


def test_the_pool_size_follows_the_environment_and_stays_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMISSION__MAX_CONCURRENT", "24")
    assert LlmApiSettings().db_pool_size == 24 + TURN_FLUSHERS
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    kit_overflow = ServiceSettings().db_max_overflow
    assert (LlmApiSettings().db_pool_size, LlmApiSettings().db_max_overflow) == (7, kit_overflow)
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    settings = LlmApiSettings()
    assert (settings.db_pool_size, settings.db_max_overflow) == (7, 0)


async def test_local_mode_apps_fit_the_embedded_postgres_together(database_url: str) -> None:
    """The all-in-one server runs the four apps on one embedded Postgres, each with its default pool."""
    pools = [LlmApiSettings(), ResponseApiSettings(), MediaApiSettings(), McpToolsSettings()]
    engine = create_engine(database_url, schema="public")
    try:
        async with engine.connect() as connection:
            limit, reserved = [
                int((await connection.execute(text(f"SHOW {name}"))).scalar_one())
                for name in ("max_connections", "superuser_reserved_connections")
            ]
    finally:
        await engine.dispose()
    assert sum(p.db_pool_size + p.db_max_overflow for p in pools) <= limit - reserved


async def test_a_second_burst_as_large_as_admission_allows_opens_no_connection(database_url: str) -> None:
    settings = LlmApiSettings()
    engine = create_engine(
        database_url,
        schema="llm_api",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    opened = 0

    def count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    event.listen(engine.sync_engine, "connect", count)
    in_flight = settings.admission.max_concurrent + TURN_FLUSHERS

    async def burst() -> None:
        everyone_in = asyncio.Barrier(in_flight)

        async def hold() -> None:
            async with driver_connection(engine) as connection:
                await everyone_in.wait()  # all of them hold a connection at once
                await connection.fetchval("SELECT 1")

        await asyncio.gather(*(hold() for _ in range(in_flight)))

    try:
        await burst()
        assert opened == in_flight
        await burst()
        assert opened == in_flight  # kept, not closed as overflow and opened again
    finally:
        await engine.dispose()
