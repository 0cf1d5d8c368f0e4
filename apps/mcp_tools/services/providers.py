"""External MCP servers bridged into this one, each tool under `<provider>_<tool>`.

The providers file (YAML, `${VAR}` expanded from the environment so secrets stay out of it):

    providers:
      - name: docs                # tool prefix: docs_<tool>
        endpoint: http://docs-mcp:8080/mcp
        enabled: true
        type: mcp-http            # streamable HTTP, the only kind bridged
        timeout: 30s              # or a number of seconds
        headers: {Authorization: "Bearer ${DOCS_MCP_TOKEN}"}

At start-up each enabled provider is asked for its tools (a provider that is down is logged and
skipped, so it cannot stop mcp-tools from starting). Unlike the original bridge, tools keep their
input schema, so a model sees the real arguments. Every call opens a fresh session (initialize, then
`tools/call`): a couple of extra round trips, but no session state to lose when either side restarts.
The provider's result (text, images, `isError`) is passed through unchanged; a provider that cannot
be reached or times out becomes a tool error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx2
import mcp_types as types
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.common.http import transport_failure

log = logging.getLogger(__name__)

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    endpoint: str
    enabled: bool = True
    type: Literal["mcp-http", "http"] = "mcp-http"
    description: str = ""
    timeout: float = 30.0
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Accepts Go-style durations (`30s`, `500ms`, `2m`) as the original file used them."""
        if isinstance(value, str) and (match := _DURATION.match(value.strip())):
            return float(match.group(1)) * _UNITS[match.group(2)]
        return value


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    providers: list[ProviderSpec] = Field(default_factory=list)


def load_providers(path: Path | None) -> list[ProviderSpec]:
    """The enabled streamable-HTTP providers in the file; none when the file does not exist."""
    if path is None or not path.is_file():
        return []
    text = _VARIABLE.sub(lambda m: os.environ.get(m.group(1), ""), path.read_text())
    parsed = ProvidersFile.model_validate(yaml.safe_load(text) or {})
    return [p for p in parsed.providers if p.enabled and p.type == "mcp-http"]


@dataclass(frozen=True)
class BridgedTool:
    provider: ProviderSpec
    remote_name: str
    tool: types.Tool


class ProviderBridge:
    def __init__(self, providers: list[ProviderSpec]) -> None:
        self.providers = providers
        self.tools: dict[str, BridgedTool] = {}

    async def discover(self) -> None:
        """Asks every provider for its tools at once, so start-up waits for the slowest one only."""
        answers = await asyncio.gather(*(self._list(p) for p in self.providers), return_exceptions=True)
        for provider, listed in zip(self.providers, answers, strict=True):
            if isinstance(listed, BaseException):  # a provider that is down must not stop start-up
                log.warning("MCP provider unavailable, tools skipped", extra={"provider": provider.name})
                continue
            for tool in listed:
                name = f"{provider.name}_{tool.name}"
                description = f"[{provider.name}] {tool.description or ''}".strip()
                bridged = tool.model_copy(update={"name": name, "description": description})
                self.tools[name] = BridgedTool(provider, tool.name, bridged)
            log.info("MCP provider bridged", extra={"provider": provider.name, "tools": len(listed)})

    def listed(self) -> list[dict[str, Any]]:
        return [b.tool.model_dump(by_alias=True, mode="json", exclude_none=True) for b in self.tools.values()]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        bridged = self.tools[name]
        provider = bridged.provider
        try:
            async with _session(provider) as session:
                result = await session.call_tool(
                    bridged.remote_name, arguments, read_timeout_seconds=provider.timeout
                )
        except Exception as exc:  # transport, timeout or protocol failure of the remote server
            log.warning("MCP provider call failed", extra={"provider": provider.name, "error": repr(exc)})
            result = types.CallToolResult(
                content=[types.TextContent(type="text", text=_failure_message(provider, exc))], is_error=True
            )
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    async def _list(self, provider: ProviderSpec) -> list[types.Tool]:
        async with _session(provider) as session:
            return list((await session.list_tools()).tools)


def _failure_message(provider: ProviderSpec, exc: Exception) -> str:
    if transport_failure(exc) == "timeout":
        return (
            f"The '{provider.name}' tool server did not answer within {provider.timeout:g}s; try again later."
        )
    return f"The '{provider.name}' tool server could not be used ({type(exc).__name__}); try again later."


@asynccontextmanager
async def _session(provider: ProviderSpec) -> AsyncIterator[ClientSession]:
    """One initialized client session to a provider."""
    timeout = httpx2.Timeout(provider.timeout)
    async with (
        httpx2.AsyncClient(headers=provider.headers, timeout=timeout) as http,
        streamable_http_client(provider.endpoint, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
