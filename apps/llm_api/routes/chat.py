"""`POST /v1/chat/completions` (the work is in `services/chat.py`).

The route is declared as every other (`create_chat_completion`: the OpenAPI document, a 405 for
other methods, the guard), but a request for it is served by `ChatLane`, matched ahead of FastAPI's
router. FastAPI's routing of included routers and its dependency solving were about a fifth of
llm-api's own CPU on a plain completion (bench/chat_cpu.py), for a route whose dependencies are
two lookups: the guard has already authenticated and admitted the caller (the principal is on
`request.state`), and the chat service is on `app.state`. The lane runs the same guard, then the
endpoint's one line; its errors reach the same exception handlers (the OpenAI envelopes). It uses a
Starlette helper FastAPI's own routes use (`fastapi.routing` imports the same private module).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import Receive, Scope, Send

from apps.common.auth.principal import Principal, PrincipalDep, get_principal
from apps.common.guard import GuardedRoute, guarded
from apps.common.state import app_state
from apps.llm_api.deps import ChatDep
from apps.llm_api.services.chat import ChatService

PATH = "/v1/chat/completions"

router = APIRouter(tags=["chat"], route_class=GuardedRoute)

# The body is read raw (one parse, unknown fields kept), so describe it for the OpenAPI document.
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": ["model", "messages"]}}},
    }
}


@router.post(PATH, openapi_extra=_BODY, response_model=None)
async def create_chat_completion(request: Request, principal: PrincipalDep, chat: ChatDep) -> Response:
    return await chat.respond(await request.body(), principal)


async def _respond(request: Request) -> Response:
    """`create_chat_completion`, its dependencies read where the guard and the lifespan left them."""
    principal: Principal = request.scope["state"]["principal"]
    return await app_state(request, "chat", ChatService).respond(await request.body(), principal)


class ChatLane(BaseRoute):
    """`POST /v1/chat/completions`, matched first: `app.router.routes.insert(0, ChatLane(route))`.

    Any other method falls through to the declared route (its 405). A span or metric that names the
    route sees the declared one (`scope["route"]`) and this path. While the app has dependency
    overrides (`app.dependency_overrides`, as tests set them), the lane steps aside too, so the
    declared route resolves the endpoint's dependencies through them.
    """

    path = path_format = PATH
    methods = frozenset({"POST"})
    express = True  # served from the exception handlers' layer, without the router (apps/common/express.py)
    path_regex = compile_path(PATH)[0]

    def __init__(self, route: APIRoute) -> None:
        _check_endpoint(route)
        self.route = route
        self.endpoint = route.endpoint
        handler = guarded(route.dependant, _respond)

        # An exception goes on to the app's ExceptionMiddleware, whose handlers (the same ones) answer
        # it. FastAPI's routes also catch at the route, so that handlers run inside the exit stacks of
        # `yield` dependencies; this endpoint has none, and the second catch cost a send wrapper.
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and get_route_path(scope) == PATH
            and not _overridden(scope)
        ):
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {}, "route": self.route}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _overridden(scope: Scope) -> bool:
    app = scope.get("app")
    return bool(getattr(app, "dependency_overrides", None))


def _check_endpoint(route: APIRoute) -> None:
    """The lane calls `_respond`, not the endpoint: refuse to start if the endpoint's parameters
    (hence what FastAPI would resolve for it) are no longer what `_respond` reproduces."""
    parameters = list(inspect.signature(route.endpoint).parameters)
    calls = [dependency.call for dependency in route.dependant.dependencies]
    if route.path != PATH or parameters != ["request", "principal", "chat"] or calls[:1] != [get_principal]:
        raise RuntimeError(f"ChatLane no longer matches {route.endpoint.__qualname__}: update _respond")


def chat_lane() -> ChatLane:
    """The lane for this module's route."""
    [route] = [r for r in router.routes if isinstance(r, APIRoute) and r.path == PATH]
    return ChatLane(route)
