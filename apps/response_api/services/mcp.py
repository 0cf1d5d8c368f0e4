"""The mcp-tools client: the official MCP SDK over streamable HTTP, with the caller's credentials.

Sessions use MCP's stateless protocol (2026-07-28) when mcp-tools speaks it: `server/discover` is
asked once per process and every later session adopts that answer, so opening a session costs no
request. Servers that predate it get the classic `initialize` handshake per session.

At most one MCP session per response, opened at its first tool call and used by every call of all
its rounds, so a round costs one HTTP exchange per tool call and a plain answer costs none. The
session is opened and closed in the response's own task (the SDK runs anyio task groups, which must
be left by the task that entered them).

The tool catalog (`tools/list`) is the same for every caller, so it is kept for
`MCP_TOOLS_CACHE_SECONDS` (`ToolCatalog`); a response lists tools itself only when the copy is stale.
A session is handed the catalog's listing (`McpSession.adopt_listing`) and the output-schema
validators compiled for it: the SDK checks every tool result against the tool's output schema and,
in a session that never listed the tools, sends a `tools/list` of its own before its first result
is returned, then compiles the schema's validator for that session. The request was a third of a
one-tool-round response's overhead (first call in a new session 9.7 ms, in a session that knows the
tools 4.0 ms) and the compiling 8% of its CPU.

Each session gets an `httpx2.AsyncClient` carrying the caller's `Authorization`; all of them share one
connection pool (`transport`), so a new session opens no new pool and no TLS context. The pool is
closed when the app stops; the per-session clients hold nothing else and are not closed themselves.

A tool call never raises: the outcome is either `output` text or an `error` in OpenAI's `mcp_call`
error shapes (`mcp_tool_execution_error` when the tool reported an error, `mcp_protocol_error` for
JSON-RPC failures and timeouts, `http_error` when mcp-tools could not be reached). One exception: the
SDK sends requests from the session's own task group, so when mcp-tools cannot be reached at all that
group fails and takes the session down with the calls in flight; the session then raises
`McpUnavailable`, and the response ends `failed` with code `tools_unavailable`. Cancelling the
call (the per-tool timeout, or cancelling the response) abandons the request, and the SDK tells the
server with `notifications/cancelled`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import DiscoverResult, ListToolsResult

from apps.common.http import transport_failure
from apps.common.storable import dumps, storable, storable_text
from apps.response_api.types import McpCallError, McpListedTool

log = logging.getLogger(__name__)

TIMEOUT_CODE = -32001


class McpUnavailable(Exception):
    """mcp-tools could not be reached: the session ended with the calls in flight."""


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    read_only: bool | None = None  # the tool's MCP `readOnlyHint`, which approval filters may name

    def chat_tool(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": self.input_schema}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def listed(self) -> McpListedTool:
        """The tool as an `mcp_list_tools` item lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "annotations": None,
        }


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    output: str | None
    error: McpCallError | None
    structured: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_message(self) -> str | None:
        if self.error is None:
            return None
        if "message" in self.error:
            return str(self.error["message"])
        return " ".join(str(p.get("text", "")) for p in self.error.get("content") or [])


class McpConnector:
    """Opens MCP sessions against `{MCP_TOOLS_URL}/v1/mcp`."""

    def __init__(self, base_url: str, transport: httpx2.AsyncBaseTransport, *, read_timeout: float) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/mcp"
        self._transport = transport
        self._timeout = httpx2.Timeout(30.0, read=read_timeout)
        self._discovered: DiscoverResult | None = None

    @asynccontextmanager
    async def session(self, headers: dict[str, str]) -> AsyncIterator[McpSession]:
        client = httpx2.AsyncClient(
            transport=self._transport, headers=headers, timeout=self._timeout, trust_env=False
        )
        try:
            async with (
                streamable_http_client(self.url, http_client=client) as (read, write),
                ClientSession(read, write) as session,
            ):
                await self._handshake(session)
                yield McpSession(session)
        except BaseExceptionGroup as group:
            cause = _sole(group)
            if transport_failure(cause) is not None:
                raise McpUnavailable(repr(cause)) from cause
            raise cause from None

    async def _handshake(self, session: ClientSession) -> None:
        """Adopt the server's cached `server/discover` answer; else discover, or fall back to initialize."""
        if self._discovered is not None:
            session.adopt(self._discovered)
            return
        try:
            self._discovered = await session.discover()
        except MCPError:
            await session.initialize()  # a server that predates the stateless protocol


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception that matters in a group the SDK's task groups wrapped around it.

    Whatever the response does inside the session (a model error, a cancellation, the deadline)
    leaves through the SDK's task groups; callers should see it as it was raised.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            leaves.append(current)
    chosen = [e for e in leaves if not isinstance(e, asyncio.CancelledError)]
    return (chosen or leaves)[0]


@dataclass(frozen=True, slots=True)
class Listing:
    """A `tools/list` answer: the tools, the pages as the server sent them, and the output-schema
    validators every session that adopts it shares (`adopt_listing`)."""

    tools: list[McpToolInfo]
    pages: list[ListToolsResult]
    validators: dict[str, Any] = field(default_factory=dict)


class McpSession:
    def __init__(self, session: ClientSession) -> None:
        self._session = session

    def adopt_listing(self, listing: Listing) -> None:
        """Give the session a fresh listing, as if it had listed the tools itself, and the listing's
        compiled output-schema validators.

        The SDK checks a tool's result against its output schema: in a session that never listed
        the tools it first sends a `tools/list`, and in every session it compiles the schema's
        validator once (~60x a validation, by the SDK's own count; 8% of a one-tool-round response's
        CPU here, since a session lives for one response). Absorbing a served listing is what the
        SDK's own `Client` does with its response cache (`_absorb_tool_listing`, idempotent on an
        absorbed page); the validators are kept per listing instead of per session. Both are SDK
        internals (mcp is pinned): without them, the SDK lists and compiles again, as before.
        """
        absorb = getattr(self._session, "_absorb_tool_listing", None)
        if absorb is None or not hasattr(self._session, "_tool_output_validators"):
            return
        # `complete` prunes the session's per-tool state to the page's tools: only a one-page
        # listing is the whole catalog (the SDK's own rule); the last of several pages is not.
        for page in listing.pages:
            absorb(page, complete=len(listing.pages) == 1)
        # After absorbing, which may replace the session's own dict. The SDK evicts a tool's
        # validator when a listing changes its schema; a listing's schemas never change.
        self._session._tool_output_validators = listing.validators

    async def list_tools(self) -> Listing:
        tools: list[McpToolInfo] = []
        pages: list[ListToolsResult] = []
        cursor: str | None = None
        while True:
            params = {"cursor": cursor} if cursor else None
            result = await self._session.list_tools(params=params)  # type: ignore[arg-type]
            pages.append(result)
            tools.extend(
                McpToolInfo(
                    t.name,
                    storable(t.description),
                    storable(t.input_schema),
                    t.annotations.read_only_hint if t.annotations else None,
                )
                for t in result.tools
            )
            cursor = result.next_cursor
            if not cursor:
                return Listing(tools, pages)

    async def call(
        self, name: str, arguments: dict[str, Any], *, timeout: float, progress: ProgressFnT | None = None
    ) -> ToolOutcome:
        """Call a tool; `progress` receives the server's progress notifications for it, if any."""
        try:
            async with asyncio.timeout(timeout):
                result = await self._session.call_tool(name, arguments, progress_callback=progress)
        except TimeoutError:
            message = f"Tool '{name}' did not finish within {timeout:g} s."
            return ToolOutcome(None, {"type": "mcp_protocol_error", "code": TIMEOUT_CODE, "message": message})
        except MCPError as exc:
            message = storable_text(exc.message)
            return ToolOutcome(None, {"type": "mcp_protocol_error", "code": exc.code, "message": message})
        except Exception as exc:
            log.warning("tool call failed", extra={"tool": name, "error": repr(exc)})
            return ToolOutcome(None, {"type": "http_error", "code": 502, "message": f"Tool '{name}' failed."})
        # A tool's output is stored with its response (row, executions, conversation): text Postgres
        # cannot store is replaced, not refused (`apps.common.storable`); the call did run.
        content = storable([block.model_dump(mode="json", exclude_none=True) for block in result.content])
        structured = storable(result.structured_content)
        if result.is_error:
            return ToolOutcome(None, {"type": "mcp_tool_execution_error", "content": content})
        return ToolOutcome(_text(content, structured), None, structured)


def _text(content: list[dict[str, Any]], structured: Any) -> str:
    texts = [block["text"] for block in content if block.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    if structured is not None:
        return dumps(structured).decode()
    return dumps(content).decode() if content else ""


class ToolCatalog:
    """The last tool listing, shared by all responses until it is `ttl` seconds old."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._listing: Listing | None = None
        self._expires = 0.0

    def get(self) -> Listing | None:
        return self._listing if time.monotonic() < self._expires else None

    def put(self, listing: Listing) -> None:
        self._listing, self._expires = listing, time.monotonic() + self._ttl


class ToolAccess:
    """One response's way to mcp-tools: the catalog, and a session opened when first needed."""

    def __init__(
        self, connector: McpConnector, catalog: ToolCatalog, headers: dict[str, str], stack: AsyncExitStack
    ) -> None:
        self._connector = connector
        self._catalog = catalog
        self._headers = headers
        self._stack = stack
        self._session: McpSession | None = None

    async def list_tools(self) -> list[McpToolInfo]:
        cached = self._catalog.get()
        if cached is not None:
            return cached.tools
        session = await self.session()
        listing = await session.list_tools()
        self._catalog.put(listing)
        session.adopt_listing(listing)
        return listing.tools

    async def session(self) -> McpSession:
        """The open session; call it from the response's own task only."""
        if self._session is None:
            session = await self._stack.enter_async_context(self._connector.session(self._headers))
            listing = self._catalog.get()
            if listing is not None:
                session.adopt_listing(listing)
            self._session = session
        return self._session
