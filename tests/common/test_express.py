"""Express routes (apps/common/express.py): served without the router, with everything around it kept."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from apps.common.errors import APIError
from apps.common.express import ExpressRoutes
from apps.common.service import service_app
from apps.common.settings import ServiceSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve


class Echo(BaseRoute):
    """POST /echo: answers with what the router would have put in the scope; `?fail` raises."""

    express = True
    path = "/echo"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"] == self.path and scope["method"] == "POST":
            return Match.FULL, {"endpoint": self.handle, "path_params": {}, "route": self}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["query_string"] == b"fail":
            raise APIError(409, "the express route refused", code="refused")
        body = {
            "express_route": scope["route"] is self,
            "router": scope["router"] is scope["app"].router,
            "exit_stack": "fastapi_middleware_astack" in scope,
        }
        await JSONResponse(body)(scope, receive, send)


def build(issuer: TestIssuer, *, lead: bool = True) -> FastAPI:
    app = service_app(ServiceSettings(service_name="express-test", auth=issuer.auth_settings()), title="x")

    async def declared(request: Request) -> JSONResponse:
        return JSONResponse({"declared": request.method})

    app.router.routes.append(Route("/echo", declared, methods=["GET", "POST"]))
    app.router.routes.insert(0 if lead else len(app.router.routes), Echo())
    return app


def stack_layers(app: FastAPI) -> list[Any]:
    layers, layer = [], app.middleware_stack
    while layer is not None and layer is not app.router:
        layers.append(layer)
        layer = getattr(layer, "app", None)
    return layers


def test_an_express_route_skips_the_router_and_keeps_the_middleware_and_handlers(issuer: TestIssuer) -> None:
    app = build(issuer)
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        served = http.post("/echo")
        refused = http.post("/echo?fail")
        other_method = http.get("/echo")
    assert served.status_code == 200
    # The scope the router would have given it, without FastAPI's per-request exit stack.
    assert served.json() == {"express_route": True, "router": True, "exit_stack": False}
    # The kit's middleware still wraps it (request id, Vary) and its errors reach the handlers.
    assert served.headers["x-request-id"] and served.headers["vary"] == "Origin"
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "message": "the express route refused",
        "type": "conflict_error",
        "param": None,
        "code": "refused",
    }
    assert refused.headers["x-request-id"]
    # What it does not match goes through the router, as before.
    assert other_method.json() == {"declared": "GET"}
    assert any(isinstance(layer, ExpressRoutes) for layer in stack_layers(app))


def test_only_routes_leading_the_list_are_express(issuer: TestIssuer) -> None:
    # Behind another route, the router's order decides, so the route is left to the router.
    app = build(issuer, lead=False)
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/echo").json() == {"declared": "POST"}
    assert not any(isinstance(layer, ExpressRoutes) for layer in stack_layers(app))
