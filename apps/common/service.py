"""The FastAPI application every app starts from.

`service_app(settings, lifespan=…)` returns an app with the kit's middleware (request id and access
log, body-size limit, CORS, admission control), the OpenAI error handlers, an OpenAPI document that
describes the statuses and errors each route answers (apps/common/openapi), `/healthz` and `/readyz`,
OpenTelemetry, and a lifespan that builds the shared pieces before the app's own lifespan runs:

- `app.state.settings`, `app.state.readiness` (add checks to it), `app.state.telemetry`,
  `app.state.admission` (requests in flight, see `apps.common.admission`);
- `app.state.http`: an outbound client for auth lookups;
- `app.state.authenticator`: JWKS verification plus, unless the app installs its own resolver, API-key
  checks through llm-api.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from apps.common.admission import Admission
from apps.common.auth.jwks import JWKSVerifier
from apps.common.auth.principal import Authenticator
from apps.common.auth.remote_keys import REVOCATIONS_PATH, RemoteAPIKeyResolver
from apps.common.cors import CORS
from apps.common.db import create_engine, database_check
from apps.common.errors import ExceptionBoundary, install_error_handlers
from apps.common.express import ExpressRoutes, leading_express_routes
from apps.common.guard import GuardedRoute
from apps.common.health import Readiness
from apps.common.health import router as health_router
from apps.common.http import make_client
from apps.common.middleware import BodySizeLimitMiddleware, LeanCORSMiddleware, RequestContextMiddleware
from apps.common.openapi import install_openapi
from apps.common.settings import ServiceSettings
from apps.common.telemetry import setup_telemetry

AppLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class ServiceApp(FastAPI):
    """A FastAPI app whose every route is a `GuardedRoute` (see `apps.common.guard`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.router.route_class = GuardedRoute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Admission's door comes before every middleware, so an overloaded process refuses cheaply;
        # it also holds each request's slot until the response, streamed or not, is completely sent.
        await self.state.admission.door(scope, receive, send, super().__call__)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        express = leading_express_routes(self.router.routes)
        router = self.router
        # Router-level middleware or form limits would be skipped with the router: then no express.
        if not express or router.middleware_stack != router.app or getattr(router, "form_limits", None):
            return stack
        layer: Any = stack
        while layer is not None:
            inner = getattr(layer, "app", None)
            if isinstance(inner, AsyncExitStackMiddleware) and inner.app is router:
                layer.app = ExpressRoutes(express, router, inner)
                break
            layer = inner
        return stack

    def include_router(self, router: APIRouter, **kwargs: Any) -> None:
        if not issubclass(router.route_class, GuardedRoute):
            raise TypeError(
                f"router {router.prefix or '/'!r} must be APIRouter(..., route_class=GuardedRoute), "
                "so callers are authenticated and text is checked before a body is parsed"
            )
        super().include_router(router, **kwargs)


def service_app(
    settings: ServiceSettings,
    *,
    title: str,
    lifespan: AppLifespan | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    openapi_paths: dict[str, Any] | None = None,
) -> FastAPI:
    """`openapi_paths`: OpenAPI path items for routes FastAPI cannot describe (a mounted ASGI app)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with make_client(timeout=5.0) as http:
            app.state.http = http
            telemetry.instrument_httpx(http)
            auth = settings.auth
            verifier = JWKSVerifier(
                jwks_url=auth.jwks_url,
                issuer=auth.issuer,
                audience=auth.audience,
                client=http,
                algorithms=auth.algorithms,
                leeway_seconds=auth.clock_skew_seconds,
                cache_seconds=auth.jwks_cache_seconds,
            )
            token = auth.internal_token.get_secret_value() if auth.internal_token else None
            keys = RemoteAPIKeyResolver(
                url=auth.api_key_validation_url,
                client=http,
                internal_token=token,
                ttl_seconds=auth.api_key_cache_seconds,
            )
            app.state.authenticator = Authenticator(verifier, keys, guests=keys)
            watch = asyncio.create_task(app.state.admission.watch_loop(), name="loop-lag")
            try:
                if lifespan is None:
                    yield
                else:
                    async with lifespan(app):
                        yield
            finally:
                watch.cancel()
                await keys.aclose()
                telemetry.shutdown()

    # FastAPI's own telemetry stays off: `setup_telemetry` instruments the app with its own providers
    # (FastAPI's would check the global ones on every request, and trace twice if they were set).
    app = ServiceApp(
        title=title,
        version=settings.version,
        lifespan=run,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.readiness = Readiness()
    install_error_handlers(app)
    install_openapi(app, extra_paths=openapi_paths)
    app.include_router(health_router)
    app.state.admission = Admission(settings.admission)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(
        LeanCORSMiddleware,
        # The policy Kong applies too (apps.common.cors); only the origins are the settings'.
        allow_origins=list(settings.cors_origins),
        allow_methods=list(CORS.methods),
        allow_headers=list(CORS.headers),
        expose_headers=list(CORS.exposed_headers),
        allow_credentials=CORS.credentials,
        max_age=CORS.max_age_seconds,
    )
    # Inside the request-id middleware, so a 500 it answers carries the id and is access-logged.
    app.add_middleware(ExceptionBoundary)
    app.add_middleware(
        RequestContextMiddleware, service_name=settings.service_name, quiet_paths=(REVOCATIONS_PATH,)
    )
    telemetry = setup_telemetry(
        app,
        service_name=settings.service_name,
        version=settings.version,
        environment=settings.environment,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
    )
    app.state.telemetry = telemetry
    return app


@asynccontextmanager
async def open_database(app: FastAPI, settings: ServiceSettings) -> AsyncIterator[AsyncEngine]:
    """The app's engine, pinned to its schema, traced, and checked by `/readyz`; disposed on exit."""
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is required")
    engine = create_engine(
        settings.database_url.get_secret_value(),
        schema=settings.db_schema,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        plan_cache_mode=settings.db_plan_cache_mode,
    )
    app.state.telemetry.instrument_engine(engine)
    app.state.readiness.add("database", database_check(engine))
    try:
        yield engine
    finally:
        await engine.dispose()
