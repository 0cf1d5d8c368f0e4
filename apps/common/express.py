"""Express routes: a route served straight from the exception handlers' layer, without the router.

Inside every middleware and Starlette's `ExceptionMiddleware` (the error handlers, the OpenAI
envelopes), FastAPI puts one more layer, `AsyncExitStackMiddleware` (an exit stack per request, for
FastAPI's own endpoints to close uploaded files), and then the router, which walks its routes and
updates the scope. A route that parses its body itself and declares no `yield` dependency needs
neither: for llm-api's `ChatLane` (matched first anyway) the two were ~7 µs of CPU per chat
completion in-process, a few percent of llm-api's own (bench/chat_cpu.py).

`ExpressRoutes` sits where the exit-stack layer was. A request one of its routes matches fully is
handed to that route with the scope the router would have given it (`router`, and the route's own
child scope); any other request goes to the exit-stack layer and the router, as before. Middleware,
exception handlers and instrumentation all still wrap an express route: only the two inner layers
are skipped. `ServiceApp` installs it for the routes marked `express = True` that lead its route list
(so no other route could have matched the request first).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


class ExpressRoutes:
    def __init__(self, routes: Sequence[BaseRoute], router: Router, fallback: ASGIApp) -> None:
        self.routes = tuple(routes)
        self.router = router
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match == Match.FULL:
                    if "router" not in scope:
                        scope["router"] = self.router
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await self.fallback(scope, receive, send)


def leading_express_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes marked `express` at the head of the router's list, before any other."""
    leading = []
    for route in routes:
        if not getattr(route, "express", False):
            break
        leading.append(route)
    return leading
