"""External MCP servers from a providers file, bridged under a name prefix."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request

from apps.gateway.embedded import free_port
from apps.mcp_tools.main import create_app
from apps.mcp_tools.services.providers import load_providers
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.server import ServerThread, serve


def build_docs_server(seen_headers: list[dict[str, str]]) -> FastAPI:
    """A real MCP server (the SDK's own) with two tools, as a third party would run it."""
    docs: MCPServer[Any] = MCPServer("docs")

    @docs.tool(description="Look up a word in the glossary.")
    async def define(word: str) -> str:
        return {"mcp": "Model Context Protocol"}.get(word.lower(), "unknown")

    @docs.tool(description="Multiply two numbers.")
    async def multiply(a: int, b: int) -> dict[str, int]:
        return {"product": a * b}

    inner = docs.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with docs.session_manager.run():
            yield

    app = FastAPI(lifespan=lifespan)

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        seen_headers.append(dict(request.headers))
        return await call_next(request)

    app.mount("/", inner)
    return app


@pytest.fixture(scope="module")
def docs_server() -> Iterator[tuple[ServerThread, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    with serve(build_docs_server(seen)) as server:
        yield server, seen


@pytest.fixture(scope="module")
def bridged(
    settings_factory: Any,
    docs_server: tuple[ServerThread, list[dict[str, str]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[McpServer]:
    server, _ = docs_server
    providers = tmp_path_factory.mktemp("providers") / "mcp-providers.yml"
    providers.write_text(
        f"""
providers:
  - name: docs
    endpoint: {server.url}/mcp
    enabled: true
    type: mcp-http
    timeout: 5s
    headers:
      Authorization: "Bearer ${{DOCS_TOKEN_FOR_TEST}}"
  - name: gone
    endpoint: http://127.0.0.1:{free_port("127.0.0.1")}/mcp
    enabled: true
    type: mcp-http
  - name: disabled
    endpoint: {server.url}/mcp
    enabled: false
"""
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DOCS_TOKEN_FOR_TEST", "docs-secret")
        app = create_app(settings_factory(mcp_providers_file=providers))
        with serve(app) as running:
            yield McpServer(running.url, app)


async def test_provider_tools_are_listed_with_prefix_and_schema(
    bridged: McpServer, issuer: TestIssuer
) -> None:
    async with mcp_session(bridged.url, issuer.mint("alice")) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert {"docs_define", "docs_multiply", "google_search"} <= set(tools)
    assert not any(name.startswith(("gone_", "disabled_")) for name in tools)
    multiply = tools["docs_multiply"]
    assert multiply.description == "[docs] Multiply two numbers."
    assert multiply.input_schema["required"] == ["a", "b"]


async def test_provider_calls_are_forwarded_with_the_configured_headers(
    bridged: McpServer, issuer: TestIssuer, docs_server: tuple[ServerThread, list[dict[str, str]]]
) -> None:
    _, seen = docs_server
    async with mcp_session(bridged.url, issuer.mint("alice")) as session:
        defined = await session.call_tool("docs_define", {"word": "MCP"})
        product = await session.call_tool("docs_multiply", {"a": 6, "b": 7})
        wrong = await session.call_tool("docs_multiply", {"a": "six", "b": 7})
    assert defined.content[0].text == "Model Context Protocol"  # type: ignore[union-attr]
    assert payload(product) == {"product": 42}
    assert "validation error" in error_text(wrong)
    assert seen[-1]["authorization"] == "Bearer docs-secret"


async def test_a_provider_that_went_away_is_a_tool_error(
    bridged: McpServer, issuer: TestIssuer, docs_server: tuple[ServerThread, list[dict[str, str]]]
) -> None:
    services = bridged.app.state.tools
    original = services.bridge.tools["docs_define"]
    dead = original.provider.model_copy(update={"endpoint": f"http://127.0.0.1:{free_port('127.0.0.1')}/mcp"})
    services.bridge.tools["docs_define"] = type(original)(dead, original.remote_name, original.tool)
    try:
        async with mcp_session(bridged.url, issuer.mint("alice")) as session:
            result = await session.call_tool("docs_define", {"word": "mcp"})
    finally:
        services.bridge.tools["docs_define"] = original
    assert "'docs' tool server could not be used" in error_text(result)


def test_providers_file_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCH_MCP_URL", "http://search:9000/mcp")
    path = tmp_path / "providers.yml"
    path.write_text(
        """
providers:
  - {name: search, endpoint: "${SEARCH_MCP_URL}", timeout: 1500ms}
  - {name: legacy, endpoint: "http://x", type: http}
  - {name: slow, endpoint: "http://y", timeout: 2m}
settings: {max_timeout: 60s}
"""
    )
    providers = load_providers(path)
    assert [(p.name, p.endpoint, p.timeout) for p in providers] == [
        ("search", "http://search:9000/mcp", 1.5),
        ("slow", "http://y", 120.0),
    ]
    assert load_providers(tmp_path / "missing.yml") == []
    assert load_providers(None) == []
