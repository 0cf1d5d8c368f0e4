"""What a tool handler needs from the request: the backends and the authenticated caller.

The MCP transport runs each tool call in the session manager's own task, so a contextvar set by
the endpoint would not reach it; the Starlette request does (the SDK hands it to every handler as
`ctx.request_context.request`). The endpoint puts the `Principal` on `request.state`, and the
backends live on the app's state, built once in the lifespan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from starlette.requests import Request

from apps.common.auth.principal import Principal
from apps.common.state import app_state
from apps.mcp_tools.services.errors import ToolFailure
from apps.mcp_tools.services.file_search import FileSearch
from apps.mcp_tools.services.providers import ProviderBridge
from apps.mcp_tools.services.sandbox import Sandbox
from apps.mcp_tools.services.scrape import Scraper
from apps.mcp_tools.services.search import WebSearch

ToolContext = Context[Any, Any]


@dataclass(frozen=True)
class ToolServices:
    search: WebSearch
    scraper: Scraper
    files: FileSearch
    sandbox: Sandbox
    bridge: ProviderBridge
    # How often a long tool tells the caller it is still running (`tools/progress.py`).
    progress_seconds: float


def request_of(ctx: ToolContext) -> Request:
    request = ctx.request_context.request
    if not isinstance(request, Request):
        raise ToolFailure("This tool is only served over the HTTP endpoint.")
    return request


def services_of(ctx: ToolContext) -> ToolServices:
    return app_state(request_of(ctx), "tools", ToolServices)


def principal_of(ctx: ToolContext) -> Principal:
    principal: Principal = request_of(ctx).state.principal
    return principal
