"""The llm-api application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apps.common.auth.issuer import LocalIssuer
from apps.common.auth.jwks_route import router as jwks_router
from apps.common.db import session_factory
from apps.common.heap import freeze_startup_heap
from apps.common.openapi import document_models
from apps.common.service import open_database, service_app
from apps.llm_api.auth.setup import include_auth_routes, start_auth
from apps.llm_api.chat_setup import chat_services, configured_providers, include_chat_routes
from apps.llm_api.openapi import ERROR_STATUSES, RESPONSE_MODELS
from apps.llm_api.settings import LlmApiSettings


def create_app(settings: LlmApiSettings | None = None) -> FastAPI:
    settings = settings or LlmApiSettings()
    providers = configured_providers(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, settings) as engine:
            app.state.sessions = session_factory(engine)
            start_auth(app, settings)
            async with chat_services(app, settings, providers):
                freeze_startup_heap()  # full collections stay off the request path
                yield

    app = service_app(settings, title="llm-api", lifespan=lifespan)
    # Routes are matched in the order they were added: the token path's first, ahead of auth's.
    include_chat_routes(app)
    include_auth_routes(app)
    document_models(app, RESPONSE_MODELS, ERROR_STATUSES)
    if settings.local_issuer_key_file is not None:
        app.state.local_issuer = LocalIssuer.from_key_file(
            settings.local_issuer_key_file, settings.auth.issuer, settings.auth.audience
        )
        app.include_router(jwks_router)
    return app
