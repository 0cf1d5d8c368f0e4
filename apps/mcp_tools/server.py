"""The MCP server at `/v1/mcp`: the SDK's streamable HTTP transport behind our own auth check.

- Built on the official SDK (`mcp` 2.x, `MCPServer`), stateless with JSON responses: every POST is
  answered on its own, so plain JSON-RPC POSTs work without `initialize` and any replica can serve
  any request; the SDK's client works too (it initializes, the server simply keeps no session).
- Progress: a JSON answer has no room for the notifications sent while a tool runs, so a request that
  asks for them (a `_meta.progressToken`, which the SDK's client sends when given a progress
  callback) is answered as an SSE stream instead, by a second session manager of the same server:
  its `notifications/progress` come first, the result last. Every other request keeps its single
  JSON answer. Long tools report progress through `tools/progress.py`.
- Credentials are checked before the SDK sees the request, with the kit's `Authenticator` (bearer
  JWT or API key); a failure is a 401 in the OpenAI error envelope. The `Principal` goes on the
  request state, where tool handlers read it (see tools/context.py).
- The SDK checks Host/Origin against DNS rebinding only when `mcp_allowed_hosts` is set: behind
  Kong and a Kubernetes Service the Host header is not known in advance, and the endpoint is
  authenticated anyway.
- A client that sends no `Accept` header (curl, simple scripts) is treated as accepting both JSON
  and SSE, as the transport requires one of them. A body that is not `application/json` is a 415
  in the OpenAI envelope (the SDK would answer a plain-text 400).
- Tools from providers (external MCP servers) are added by a server middleware: it appends them to
  `tools/list` and forwards their `tools/call`s; the SDK's own tools are untouched. The same
  middleware answers a call to a tool that does not exist with the list of tools that do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from apps.common.admission import admit
from apps.common.auth.principal import Authenticator
from apps.common.errors import APIError
from apps.mcp_tools.settings import McpToolsSettings
from apps.mcp_tools.tools import files, python, web
from apps.mcp_tools.tools.context import ToolServices

SERVER_NAME = "jan-mcp-tools"
INSTRUCTIONS = (
    "Tools for web search (google_search), reading pages (scrape), searching your own documents "
    "(file_search_index, file_search_query) and running code in a sandbox (python_exec)."
)
_DEFAULT_ACCEPT = (b"accept", b"application/json, text/event-stream")
_DOC_LINK = re.compile(r"\n *For further information visit https://errors\.pydantic\.dev/\S*")


class ToolCallMiddleware:
    """Adds the bridged providers' tools to `tools/list` and answers their `tools/call`s; a call to a
    tool that exists nowhere gets a tool error listing the tools there are."""

    def __init__(self, server: MCPServer[Any]) -> None:
        self.server = server
        self._own: frozenset[str] | None = None  # the server's tools, fixed once it serves

    async def _own_tools(self) -> frozenset[str]:
        if self._own is None:
            self._own = frozenset(tool.name for tool in await self.server.list_tools())
        return self._own

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        services = _services(ctx)
        bridged = services.bridge.tools if services else {}
        if ctx.method == "tools/call":
            params = ctx.params or {}
            name = params.get("name")
            if isinstance(name, str) and name in bridged:
                assert services is not None
                return await services.bridge.call(name, dict(params.get("arguments") or {}))
            if isinstance(name, str) and name not in await self._own_tools():
                return await self._unknown(name, bridged)
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict) and services is not None:
            result["tools"] = [*result.get("tools", []), *services.bridge.listed()]
        if ctx.method == "tools/call" and isinstance(result, dict) and result.get("isError"):
            _drop_doc_links(result)
        return result

    async def _unknown(self, name: str, bridged: dict[str, Any]) -> dict[str, Any]:
        names = sorted([*await self._own_tools(), *bridged])
        message = f"Unknown tool '{name}'. Call one of: {', '.join(names)}."
        result = CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _drop_doc_links(result: dict[str, Any]) -> None:
    """Argument errors are pydantic's messages; their documentation links only cost a model tokens."""
    for block in result.get("content", []):
        if block.get("type") == "text":
            block["text"] = _DOC_LINK.sub("", block["text"])


def _services(ctx: ServerRequestContext[Any, Any]) -> ToolServices | None:
    request = ctx.request
    if not isinstance(request, Request):
        return None
    services: ToolServices | None = getattr(request.app.state, "tools", None)
    return services


def build_mcp_server(version: str) -> MCPServer[Any]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    server: MCPServer[Any] = MCPServer(SERVER_NAME, version=version, instructions=INSTRUCTIONS)
    # MCPServer calls `logging.basicConfig` with a Rich console handler; the kit owns logging.
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    web.register(server)
    files.register(server)
    python.register(server)
    server.middleware.append(ToolCallMiddleware(server))
    return server


def transport_security(settings: McpToolsSettings) -> TransportSecuritySettings:
    if not settings.mcp_allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        allowed_hosts=list(settings.mcp_allowed_hosts), allowed_origins=list(settings.mcp_allowed_origins)
    )


def mcp_endpoint(server: MCPServer[Any], settings: McpToolsSettings) -> AuthenticatedEndpoint:
    """The ASGI app for `/v1/mcp`; its `run()` must wrap the app's lifetime."""
    # Called for the session manager it sets up; the Starlette app it returns is not needed, the
    # route (behind our auth) is mounted by create_app.
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(settings),
        max_request_body_size=settings.mcp_max_body_bytes,
    )
    streaming = StreamableHTTPSessionManager(
        app=server.session_manager.app,  # the same low-level server answers both ways
        json_response=False,
        stateless=True,
        security_settings=transport_security(settings),
        max_request_body_size=settings.mcp_max_body_bytes,
    )
    return AuthenticatedEndpoint(server.session_manager, streaming)


def _wants_progress(body: bytes) -> bool:
    """Whether a JSON-RPC request asks for progress notifications (`params._meta.progressToken`)."""
    if b'"progressToken"' not in body:  # the common case, without parsing
        return False
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get("progressToken") is not None


class AuthenticatedEndpoint:
    """Authenticates and admits the caller (`apps.common.admission`), then hands over to the MCP transport."""

    def __init__(self, plain: StreamableHTTPSessionManager, streaming: StreamableHTTPSessionManager) -> None:
        self.plain = plain
        self.streaming = streaming

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Both session managers' task groups, for the app's lifetime."""
        async with self.plain.run(), self.streaming.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        authenticator: Authenticator = scope["app"].state.authenticator
        try:
            principal = await authenticator.authenticate(
                headers.get("authorization"), headers.get("x-api-key")
            )
            await admit(scope, principal.user_id)
        except APIError as exc:
            response = JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if not headers.get("content-type", "").lower().startswith("application/json"):
            # The SDK would answer a plain-text 400; a wrong body type is a 415, in our envelope.
            error = APIError(
                415, "Send the JSON-RPC message as application/json.", code="unsupported_content_type"
            )
            await JSONResponse(error.body(), status_code=415)(scope, receive, send)
            return
        if "accept" not in headers or headers["accept"].strip() in ("", "*/*"):
            scope["headers"] = [
                *(item for item in scope["headers"] if item[0] != b"accept"),
                _DEFAULT_ACCEPT,
            ]
        body, replay = await _buffered(receive)
        accepts_sse = "text/event-stream" in dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
        manager = self.streaming if accepts_sse and _wants_progress(body) else self.plain
        await manager.asgi_app(scope, replay, send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body (bounded by the app's body limit), and a `receive` that gives it again."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _replaying([message], receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replaying([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replaying(pending: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
