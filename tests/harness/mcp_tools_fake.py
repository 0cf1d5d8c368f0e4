"""A small MCP server built with the official SDK, standing in for mcp-tools on loopback.

It serves `/v1/mcp` (streamable HTTP, stateless, like mcp-tools) with a cheap tool (`add`), an
`echo`, a slow tool (`slow`, which records when it starts and when it is cancelled) and a failing
tool (`fail`). It answers with SSE streams (the SDK's default): observed with SDK 2.3 in stateless
mode, a tool call the client abandons (timeout, cancel) is then cancelled at the server too, while
with plain JSON answers (`json_response=True`) the tool runs on until it ends by itself.

It requires an `Authorization` header and keeps every one it saw, so tests can check that
response-api forwards the caller's credentials, and the JSON-RPC method of every request it
received (`methods`), so tests can count what a client sent. The server runs in its own thread, so
its signals to tests are thread-safe (`threading.Event`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


class FakeMcpTools:
    def __init__(self) -> None:
        self.url = ""
        self.authorizations: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.methods: list[str] = []
        self.slow_started = threading.Event()
        self.slow_cancelled = threading.Event()
        self.app = self._build()

    def reset(self) -> None:
        self.authorizations.clear()
        self.calls.clear()
        self.methods.clear()
        self.slow_started.clear()
        self.slow_cancelled.clear()

    def _build(self) -> FastAPI:
        server = MCPServer("fake-tools", log_level="WARNING")

        @server.tool(description="Add two integers.")
        def add(a: int, b: int) -> int:
            self.calls.append(("add", {"a": a, "b": b}))
            return a + b

        @server.tool(description="Repeat the text.")
        def echo(text: str) -> str:
            self.calls.append(("echo", {"text": text}))
            return text

        @server.tool(description="Wait, then answer.")
        async def slow(seconds: float) -> str:
            self.calls.append(("slow", {"seconds": seconds}))
            self.slow_started.set()
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                self.slow_cancelled.set()
                raise
            return f"waited {seconds:g}s"

        @server.tool(description="Always fails.")
        def fail(reason: str) -> str:
            self.calls.append(("fail", {"reason": reason}))
            raise ToolError(f"fail tool refused: {reason}")

        mcp_app = server.streamable_http_app(streamable_http_path="/mcp", stateless_http=True)

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with server.session_manager.run():
                yield

        app = FastAPI(lifespan=lifespan)

        @app.middleware("http")
        async def require_credentials(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            authorization = request.headers.get("authorization")
            if not authorization:
                return JSONResponse({"error": {"message": "missing credentials"}}, status_code=401)
            self.authorizations.append(authorization)
            return await call_next(request)

        app.mount("/v1", self._recording(mcp_app))
        return app

    def _recording(self, app: Any) -> Any:
        """`app`, noting the JSON-RPC method of each request body it reads."""

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            async def read() -> Any:
                message = await receive()
                body = message.get("body") or b""
                if message.get("type") == "http.request" and body:
                    with contextlib.suppress(ValueError):
                        decoded = orjson.loads(body)
                        if isinstance(decoded, dict) and isinstance(decoded.get("method"), str):
                            self.methods.append(decoded["method"])
                return message

            await app(scope, read, send)

        return recorded
