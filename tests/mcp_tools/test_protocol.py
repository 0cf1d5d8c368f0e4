"""The `/v1/mcp` endpoint: handshake, tool listing, auth, and bad input of every kind."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest

from apps.mcp_tools.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import API_KEY, McpServer, error_text, mcp_session, payload
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT

TOOLS = {"google_search", "scrape", "file_search_index", "file_search_query", "python_exec"}
JSON_RPC = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def test_initialize_and_list_every_tool_with_a_valid_schema(
    mcp_server: McpServer, issuer: TestIssuer
) -> None:
    async with mcp_session(mcp_server.url, issuer.mint("alice")) as session:
        listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        assert tool.input_schema["type"] == "object"
        assert tool.description and len(tool.description) > 60
    assert tools["google_search"].input_schema["required"] == ["q"]
    assert tools["scrape"].input_schema["required"] == ["url"]
    assert tools["python_exec"].input_schema["required"] == ["code"]
    assert set(tools["file_search_index"].input_schema["properties"]) >= {"document_id", "text", "tags"}


async def test_initialize_reports_the_server(mcp_server: McpServer, issuer: TestIssuer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "curl", "version": "1"},
                },
            },
        )
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["serverInfo"]["name"] == "jan-mcp-tools"
    assert "tools" in result["capabilities"]
    assert "mcp-session-id" not in response.headers  # stateless


async def test_plain_json_rpc_post_calls_a_tool_without_a_handshake(
    mcp_server: McpServer, issuer: TestIssuer
) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            # No Accept header at all, as curl sends it: the endpoint fills it in.
            headers={"content-type": "application/json", "authorization": f"Bearer {issuer.mint('alice')}"},
            json={
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "google_search", "arguments": {"q": "python programming", "num": 2}},
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"] == 7 and body["result"]["isError"] is False
    assert body["result"]["structuredContent"]["results"][0]["position"] == 1


async def test_no_credentials_is_a_401_in_the_openai_envelope(mcp_server: McpServer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint, headers=JSON_RPC, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "Missing credentials" in error["message"]


@pytest.mark.parametrize("kind", ["expired", "wrong_audience", "unsigned", "garbage"])
async def test_bad_tokens_are_refused(mcp_server: McpServer, issuer: TestIssuer, kind: str) -> None:
    token = {
        "expired": issuer.mint_expired(),
        "wrong_audience": issuer.mint_wrong_audience(),
        "unsigned": issuer.mint_unsigned(),
        "garbage": "not-a-jwt",
    }[kind]
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "authorization": f"Bearer {token}"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


async def test_api_keys_work_in_either_header(mcp_server: McpServer) -> None:
    async with mcp_session(mcp_server.url, API_KEY) as session:
        assert len((await session.list_tools()).tools) == len(TOOLS)
    async with mcp_session(mcp_server.url, **{"X-API-Key": API_KEY}) as session:
        assert len((await session.list_tools()).tools) == len(TOOLS)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "x-api-key": "sk_unknown"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


async def test_unknown_tool_is_a_tool_error(mcp_server: McpServer, issuer: TestIssuer) -> None:
    async with mcp_session(mcp_server.url, issuer.mint("alice")) as session:
        result = await session.call_tool("make_coffee", {})
    message = error_text(result)
    assert message.startswith("Unknown tool 'make_coffee'. Call one of: file_search_index, file_search_query")


@pytest.mark.parametrize(
    ("tool", "arguments", "mentions"),
    [
        ("google_search", {"q": "x", "num": "many"}, "num"),
        ("google_search", {"q": "x", "num": 500}, "num"),
        ("google_search", {}, "q"),
        ("python_exec", {"code": ["print(1)"]}, "code"),
        ("python_exec", {"code": "print(1)", "timeout": -1}, "timeout"),
        ("file_search_query", {"query": "x", "top_k": 0}, "top_k"),
        ("file_search_index", {"text": "no id"}, "document_id"),
        ("scrape", {"url": 42}, "url"),
        ("google_search", {"q": "x" * 5000}, "q"),
        ("python_exec", {"code": "x" * 100_001}, "code"),
    ],
)
async def test_bad_arguments_are_tool_errors_naming_the_argument(
    mcp_server: McpServer, issuer: TestIssuer, tool: str, arguments: dict[str, Any], mentions: str
) -> None:
    async with mcp_session(mcp_server.url, issuer.mint("alice")) as session:
        result = await session.call_tool(tool, arguments)
    message = error_text(result)
    assert mentions in message and "validation error" in message
    assert "errors.pydantic.dev" not in message


async def test_a_body_over_the_limit_is_413(settings_factory: Any, issuer: TestIssuer) -> None:
    app = create_app(settings_factory(mcp_max_body_bytes=64 * 1024))
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "python_exec", "arguments": {"code": "x" * 100_000}},
    }
    with serve(app) as server:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            response = await client.post(
                f"{server.url}/v1/mcp",
                headers={**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}"},
                json=body,
            )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", -32700),
        (b"{not json", -32700),
        (b'{"jsonrpc": "2.0", "id": 1}', -32602),
        (b'{"id": 1, "method": "tools/list"}', -32602),
        (b"[]", -32602),
    ],
)
async def test_malformed_json_rpc_is_a_400_with_a_json_rpc_error(
    mcp_server: McpServer, issuer: TestIssuer, body: bytes, code: int
) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}"},
            content=body,
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_get_and_delete_are_refused_cleanly(mcp_server: McpServer, issuer: TestIssuer) -> None:
    headers = {"authorization": f"Bearer {issuer.mint('alice')}", "accept": "text/event-stream"}
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        get = await client.get(mcp_server.endpoint, headers=headers)
        delete = await client.delete(mcp_server.endpoint, headers=headers)
    assert get.status_code == delete.status_code == 405
    assert get.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_method_is_method_not_found(mcp_server: McpServer, issuer: TestIssuer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}"},
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/destroy"},
        )
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32601


async def test_allowed_hosts_are_configurable(settings_factory: Any, issuer: TestIssuer) -> None:
    app = create_app(settings_factory(mcp_allowed_hosts=("mcp-tools.jan.svc:*", "api.example.com")))
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}"}
    with serve(app) as server:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:

            async def post(host: str) -> int:
                response = await client.post(
                    f"{server.url}/v1/mcp", headers={**headers, "host": host}, json=request
                )
                return response.status_code

            allowed, also, refused = (
                await post("mcp-tools.jan.svc:8091"),
                await post("api.example.com"),
                await post("evil.example"),
            )
    assert (allowed, also, refused) == (200, 200, 421)


async def test_any_host_is_served_by_default(mcp_server: McpServer, issuer: TestIssuer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        response = await client.post(
            mcp_server.endpoint,
            headers={**JSON_RPC, "authorization": f"Bearer {issuer.mint('alice')}", "host": "mcp-tools:8091"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert response.status_code == 200


async def test_health_endpoints(mcp_server: McpServer) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        assert (await client.get(f"{mcp_server.url}/healthz")).status_code == 200
        ready = await client.get(f"{mcp_server.url}/readyz")
    assert ready.status_code == 200, ready.text


async def test_results_carry_the_payload_as_text_and_structured_content(
    mcp_server: McpServer, issuer: TestIssuer
) -> None:
    async with mcp_session(mcp_server.url, issuer.mint("alice")) as session:
        result = await session.call_tool("google_search", {"q": "postgres"})
    assert payload(result) == result.structured_content
