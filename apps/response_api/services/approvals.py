"""MCP approvals, as in OpenAI's Responses API.

An `mcp` tool's `require_approval` says which of its tools need the caller's approval before they
run: `"always"`, `"never"`, or `{"always": {"tool_names": [...], "read_only": bool}, "never": {...}}`
(a tool matches a filter when its name is listed, or, with `read_only`, when its MCP `readOnlyHint`
equals it). Left out, no tool needs approval: this deployment's own tools are trusted by its
operator, which is where OpenAI's default (approve every remote server) differs on purpose. A tool
that matches both filters needs approval.

When the model calls such a tool, the call is not run: the response gets an `mcp_approval_request`
output item (`id`, `name`, `arguments`, `server_label`) and ends `completed` once the round's other
calls have run, as for a client-side function call. The caller answers in a new response, with
`previous_response_id` (or the same `conversation`) and an input item
`{"type": "mcp_approval_response", "approval_request_id": ..., "approve": bool, "reason"?: ...}`:
- approved: the call runs first thing in that response, as an `mcp_call` item carrying
  `approval_request_id`, and the model then reads its result;
- refused: nothing runs; the model reads that the call was refused (and the reason, if given).
An answer naming no request of the history, or a request already answered, is a 400.
"""

from __future__ import annotations

from typing import Any

from apps.common.errors import bad_request
from apps.response_api.schemas import McpTool
from apps.response_api.services.mcp import McpToolInfo


def _matches(spec: Any, info: McpToolInfo) -> bool:
    if not isinstance(spec, dict):
        return False
    names, read_only = spec.get("tool_names"), spec.get("read_only")
    if names is not None and info.name in names:
        return True
    return read_only is not None and info.read_only is not None and info.read_only == read_only


def needs_approval(specs: list[McpTool], info: McpToolInfo) -> bool:
    """Whether any `mcp` tool of the request asks approval for this tool."""
    for spec in specs:
        rule = spec.require_approval
        if rule == "always" or (isinstance(rule, dict) and _matches(rule.get("always"), info)):
            return True
    return False


def approved_requests(
    history: list[dict[str, Any]], input_items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The approval requests this input approves, in order; a 400 for an answer that fits no request."""
    requests: dict[str, dict[str, Any]] = {}
    answered: set[str] = set()
    for item in history:
        if item["type"] == "mcp_approval_request":
            requests[str(item["id"])] = item
        elif item["type"] == "mcp_approval_response":
            answered.add(str(item["approval_request_id"]))
        elif item["type"] == "mcp_call" and item.get("approval_request_id"):
            answered.add(str(item["approval_request_id"]))
    approved: list[dict[str, Any]] = []
    for index, item in enumerate(input_items):
        if item["type"] == "mcp_approval_request":
            requests[str(item["id"])] = item
            continue
        if item["type"] != "mcp_approval_response":
            continue
        request_id = str(item["approval_request_id"])
        param = f"input[{index}].approval_request_id"
        if request_id not in requests:
            raise bad_request(
                f"No approval request '{request_id}' in this response's history: answer it with "
                "'previous_response_id' set to the response that asked.",
                param=param,
            )
        if request_id in answered:
            raise bad_request(f"Approval request '{request_id}' was already answered.", param=param)
        answered.add(request_id)
        if item["approve"]:
            approved.append(requests[request_id])
    return approved
