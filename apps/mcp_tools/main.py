"""The mcp-tools application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps.common.db import create_engine, database_check, session_factory
from apps.common.service import service_app
from apps.mcp_tools.settings import McpToolsSettings


def create_app(settings: McpToolsSettings | None = None) -> FastAPI:
    settings = settings or McpToolsSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.database_url is None:
            raise RuntimeError("DATABASE_URL is required")
        engine = create_engine(
            settings.database_url.get_secret_value(),
            schema=settings.db_schema,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        app.state.telemetry.instrument_engine(engine)
        app.state.sessions = session_factory(engine)
        app.state.readiness.add("database", database_check(engine))
        try:
            yield
        finally:
            await engine.dispose()

    return service_app(settings, title="mcp-tools", lifespan=lifespan)
