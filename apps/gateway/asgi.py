"""The local gateway: one ASGI app that dispatches to the four apps by the route table.

Requests keep their full path (the apps serve `/v1/...` themselves, as behind Kong with
`strip_path: false`). `/healthz` and `/readyz` at the root report every app; readiness is 503 when
any app is not ready. `/openapi.json` is the four apps' documents merged into one (only the paths
this gateway routes), and `/docs` is Swagger UI over it. The gateway runs each app's lifespan in turn
and closes them in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.types import Receive, Scope, Send

from apps.common.errors import envelope
from apps.common.openapi import merge_documents
from apps.gateway.routes import ROUTES, AppName, Route, match

log = logging.getLogger(__name__)


class LocalGateway:
    def __init__(self, apps: dict[AppName, FastAPI], routes: tuple[Route, ...] = ROUTES) -> None:
        self.apps = apps
        self.routes = tuple(route for route in routes if route.app in apps)
        self._openapi: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path in ("/healthz", "/readyz"):
            status, body = await (self.health() if path == "/healthz" else self.readiness())
            await _send_json(send, status, body)
            return
        if scope["type"] == "http" and path in ("/openapi.json", "/docs"):
            await self._documentation(path, scope, receive, send)
            return
        route = match(path, self.routes)
        if route is None:
            if scope["type"] == "http":
                await _send_json(send, 404, envelope(f"No route for {path}", type="not_found_error"))
            return
        await self.apps[route.app](scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """One OpenAPI document for everything this gateway routes."""
        if self._openapi is None:
            documents = {}
            for name, app in self.apps.items():
                document = app.openapi()
                paths = {
                    path: item
                    for path, item in document.get("paths", {}).items()
                    if (route := match(path, self.routes)) is not None and route.app == name
                }
                documents[name.value] = {**document, "paths": paths}
            version = next(iter(self.apps.values())).version if self.apps else "0"
            self._openapi = merge_documents(documents, title="Jan Server API", version=version)
        return self._openapi

    async def _documentation(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        if path == "/openapi.json":
            await _send_json(send, 200, self.openapi())
            return
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="Jan Server API")
        await page(scope, receive, send)

    async def health(self) -> tuple[int, dict[str, Any]]:
        apps = {name.value: {"status": "ok"} for name in self.apps}
        return 200, {"status": "ok", "apps": apps}

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        names = list(self.apps)
        results = await asyncio.gather(*(self.apps[name].state.readiness.run() for name in names))
        apps = {
            name.value: {"status": "ready" if ready else "not_ready", "checks": checks}
            for name, (ready, checks) in zip(names, results, strict=True)
        }
        ready = all(ready for ready, _ in results)
        return (200 if ready else 503), {"status": "ready" if ready else "not_ready", "apps": apps}

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with AsyncExitStack() as stack:
            try:
                for app in self.apps.values():
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                log.exception("an app failed to start")
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = orjson.dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
