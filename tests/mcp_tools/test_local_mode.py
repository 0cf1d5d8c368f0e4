"""mcp-tools in local mode (`make dev`): backends from the environment, behind the local gateway."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from apps.gateway.asgi import LocalGateway
from apps.gateway.local_apps import LocalEnvironment, mcp_tools
from apps.gateway.routes import AppName
from apps.mcp_tools.settings import McpToolsSettings
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT


def test_backends_come_from_the_environment(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARXNG_URL", "http://searxng:8080")
    monkeypatch.setenv("SERPER_API_KEY", "serper-key")
    monkeypatch.setenv("SANDBOX_FUSION_URL", "http://sandbox-fusion:8080")
    monkeypatch.setenv("EMBEDDINGS_URL", "http://embeddings:8000/v1")
    env = LocalEnvironment(
        base_url="http://127.0.0.1:8000",
        data_dir=tmp_path,
        database_url=database_url,
        s3_endpoint_url="http://127.0.0.1:1",
        model_url=None,
        model_api_key=None,
        internal_token="t",
    )
    settings: McpToolsSettings = mcp_tools(env).state.settings
    assert settings.searxng_url == "http://searxng:8080"
    assert settings.serper_api_key is not None and settings.serper_api_key.get_secret_value() == "serper-key"
    assert settings.sandbox_fusion_url == "http://sandbox-fusion:8080"
    assert settings.embeddings_url == "http://embeddings:8000/v1"
    assert settings.media_api_url == env.base_url


def test_the_gateway_routes_v1_mcp_and_it_needs_credentials(database_url: str, tmp_path: Path) -> None:
    env = LocalEnvironment(
        base_url="http://127.0.0.1:1",
        data_dir=tmp_path,
        database_url=database_url,
        s3_endpoint_url="http://127.0.0.1:1",
        model_url=None,
        model_api_key=None,
        internal_token="t",
    )
    with serve(LocalGateway({AppName.MCP_TOOLS: mcp_tools(env)})) as server:
        response = httpx.post(
            f"{server.url}/v1/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"accept": "application/json, text/event-stream"},
            timeout=CLIENT_TIMEOUT,
        )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
