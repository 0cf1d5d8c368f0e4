"""The llm-api application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps.common.auth.issuer import LocalIssuer
from apps.common.auth.jwks_route import router as jwks_router
from apps.common.db import create_engine, database_check, session_factory
from apps.common.service import service_app
from apps.llm_api.auth.setup import include_auth_routes, start_auth
from apps.llm_api.chat_setup import chat_services, configured_providers, include_chat_routes
from apps.llm_api.settings import LlmApiSettings


def create_app(settings: LlmApiSettings | None = None) -> FastAPI:
    settings = settings or LlmApiSettings()
    providers = configured_providers(settings)

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
        start_auth(app, settings)
        try:
            async with chat_services(app, settings, providers):
                yield
        finally:
            await engine.dispose()

    app = service_app(settings, title="llm-api", lifespan=lifespan)
    include_auth_routes(app)
    include_chat_routes(app)
    if settings.local_issuer_key_file is not None:
        app.state.local_issuer = LocalIssuer.from_key_file(
            settings.local_issuer_key_file, settings.auth.issuer, settings.auth.audience
        )
        app.include_router(jwks_router)
    return app
