"""The public response object: its first state, and the `error` it carries when it fails.

With no `tools` in the request, the deployment's MCP tools are offered (`OFFER_MCP_TOOLS_BY_DEFAULT`)
and the body lists them as one `mcp` tool that needs no approval.
"""

from __future__ import annotations

import time
from typing import Any

from apps.common.ids import random_id
from apps.response_api.schemas import CreateResponseRequest
from apps.response_api.types import ErrorBody, ResponseBody


def initial_body(request: CreateResponseRequest, *, offer_mcp: bool, server_label: str) -> ResponseBody:
    """The response object as it starts: `queued` in background, `in_progress` otherwise."""
    tools: list[dict[str, Any]]
    if request.tools:
        tools = [tool.model_dump(exclude_none=True) for tool in request.tools]
    elif offer_mcp:
        tools = [{"type": "mcp", "server_label": server_label, "require_approval": "never"}]
    else:
        tools = []
    return {
        "id": random_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "queued" if request.background else "in_progress",
        "background": request.background,
        "model": request.model,
        "instructions": request.instructions,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_output_tokens": request.max_output_tokens,
        "previous_response_id": request.previous_response_id,
        "conversation": None,
        "tool_choice": request.tool_choice or "auto",
        "tools": tools,
        "text": request.text or {"format": {"type": "text"}},
        "store": request.store,
        "user": request.user,
        "usage": None,
        "completed_at": None,
    }


def error_body(code: str, message: str) -> ErrorBody:
    return {"code": code, "message": message}
