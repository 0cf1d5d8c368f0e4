"""`/v1/mcp` in the OpenAPI document: the MCP streamable-HTTP endpoint, which FastAPI cannot describe.

It is one JSON-RPC 2.0 endpoint (stateless, JSON responses): `initialize`, `tools/list` and
`tools/call` with the tools `web_search`, `scrape`, `file_search_index`, `file_search_query` and
`python_exec`. Errors of the transport itself (a body that is not JSON-RPC, a wrong `Accept` or
`Content-Type`) are JSON-RPC error objects, as the MCP specification has them; authentication and
the kit's limits answer in the OpenAI envelope.
"""

from __future__ import annotations

from typing import Any

from apps.common.openapi import DESCRIPTIONS

_ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_JSONRPC_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["jsonrpc", "error"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer", "null"]},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
        },
    },
}
_JSONRPC_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["jsonrpc", "method"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer"]},
        "method": {
            "type": "string",
            "examples": ["initialize", "tools/list", "tools/call"],
        },
        "params": {"type": "object"},
    },
}
_JSONRPC_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["jsonrpc"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer", "null"]},
        "result": {"type": "object"},
        "error": _JSONRPC_ERROR["properties"]["error"],
    },
}


def _error(status: int, schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": description or DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema}},
    }
    if status == 503:
        entry["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return entry


def mcp_paths(path: str) -> dict[str, Any]:
    either = {"oneOf": [_ENVELOPE, _JSONRPC_ERROR]}
    return {
        path: {
            "post": {
                "tags": ["mcp"],
                "summary": "MCP (JSON-RPC 2.0 over streamable HTTP)",
                "description": __doc__,
                "operationId": "mcp",
                "security": [{"bearer": []}, {"apiKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _JSONRPC_REQUEST}},
                },
                "responses": {
                    "200": {
                        "description": "The JSON-RPC response.",
                        "content": {"application/json": {"schema": _JSONRPC_RESPONSE}},
                    },
                    "202": {"description": "A notification or response was accepted (no body)."},
                    "400": _error(400, either, "The body is not a valid JSON-RPC message."),
                    "401": _error(401, _ENVELOPE),
                    "403": {
                        "description": "Origin not allowed (only with `MCP_ALLOWED_ORIGINS`).",
                        "content": _TEXT,
                    },
                    "404": _error(404, _JSONRPC_ERROR, "No such session (the server is stateless)."),
                    "406": _error(406, _JSONRPC_ERROR, "`Accept` names neither JSON nor SSE."),
                    "413": _error(413, either),
                    "415": _error(415, _ENVELOPE, "The body is not `application/json`."),
                    "421": {
                        "description": "Host not allowed (only with `MCP_ALLOWED_HOSTS`).",
                        "content": _TEXT,
                    },
                    "503": _error(503, _ENVELOPE),
                },
            }
        }
    }
