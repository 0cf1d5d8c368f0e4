"""The official MCP client against an MCP server on loopback, and reading its tool results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import mcp_types as types
from fastapi import FastAPI
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

API_KEY = "sk_test_carol"


@dataclass
class McpServer:
    url: str
    app: FastAPI

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/mcp"


@asynccontextmanager
async def mcp_session(url: str, token: str | None = None, **headers: str) -> AsyncIterator[ClientSession]:
    """An initialized session of the official client, sending `token` as a bearer credential."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        streamable_http_client(f"{url}/v1/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def payload(result: types.CallToolResult) -> dict[str, Any]:
    """The JSON payload of a successful tool result (its one text block)."""
    assert not result.is_error, result.content
    [block] = result.content
    assert isinstance(block, types.TextContent)
    data: dict[str, Any] = json.loads(block.text)
    return data


def error_text(result: types.CallToolResult) -> str:
    """The message of a failed tool call."""
    assert result.is_error, result.content
    [block] = result.content
    assert isinstance(block, types.TextContent)
    return block.text
