"""mcp-tools served on loopback with every backend pointed at a loopback fake.

- web search: `FakeSearch` (Serper's and SearXNG's JSON), the Serper key configured;
- embeddings: the `upstream` FakeUpstream's `/v1/embeddings` (deterministic, 384 dimensions);
- media-api: a small fake of `GET /v1/media/{id}/content` that serves each file to its owner only;
- API keys: a fake of llm-api's validation endpoint;
- python exec: `FakeSandbox` (SandboxFusion's `/run_code`, really running the code).

Tests talk to it with the official `mcp` client (`mcp_session`, in `tests/harness/mcp_client.py`)
or plain HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr

from apps.mcp_tools.main import create_app
from apps.mcp_tools.settings import McpToolsSettings
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import API_KEY, McpServer
from tests.harness.media_content import FakeMedia
from tests.harness.sandbox import FakeSandbox
from tests.harness.search import SERPER_KEY, FakeSearch
from tests.harness.server import serve, serve_fake
from tests.harness.upstream import FakeUpstream


def build_key_service(issuer: TestIssuer) -> FastAPI:
    """llm-api's API-key validation, answering for one known key."""
    app = FastAPI()

    @app.post("/validate")
    async def validate(request: Request) -> Response:
        body = json.loads(await request.body())
        if body.get("api_key") != API_KEY:
            return JSONResponse({"error": {"message": "unknown key"}}, status_code=401)
        return JSONResponse({"subject": "carol", "issuer": issuer.issuer, "key_id": "key_1"})

    return app


@pytest.fixture(scope="session")
def search_server() -> Iterator[FakeSearch]:
    with serve_fake(FakeSearch()) as fake:
        yield fake


@pytest.fixture
def search(search_server: FakeSearch) -> FakeSearch:
    search_server.reset()
    return search_server


@pytest.fixture(scope="session")
def media_server() -> Iterator[FakeMedia]:
    fake = FakeMedia(files={})
    with serve(fake.app) as server, serve(fake.store) as store:
        fake.url, fake.store_url = server.url, store.url
        yield fake


@pytest.fixture(scope="session")
def key_service(issuer: TestIssuer) -> Iterator[str]:
    with serve(build_key_service(issuer)) as server:
        yield f"{server.url}/validate"


@pytest.fixture(scope="session")
def settings_factory(
    database_url: str,
    issuer: TestIssuer,
    upstream_server: FakeUpstream,
    search_server: FakeSearch,
    sandbox_server: FakeSandbox,
    media_server: FakeMedia,
    key_service: str,
) -> Any:
    def build(**overrides: Any) -> McpToolsSettings:
        values: dict[str, Any] = {
            "database_url": SecretStr(database_url),
            "auth": issuer.auth_settings(api_key_validation_url=key_service, api_key_cache_seconds=0),
            "serper_api_key": SecretStr(SERPER_KEY),
            "serper_url": search_server.url,
            "searxng_url": search_server.url,
            "search_timeout_seconds": 2.0,
            "embeddings_url": upstream_server.base_url,
            "embeddings_model": "fake-embedding",
            "media_api_url": media_server.url,
            "sandbox_fusion_url": sandbox_server.url,
            "sandbox_timeout_seconds": 3.0,
            "scrape_allow": ("127.0.0.0/8",),
            "mcp_providers_file": None,
            "log_format": "console",
        }
        values.update(overrides)
        return McpToolsSettings(**values)

    return build


@pytest.fixture(scope="session")
def mcp_server(settings_factory: Any) -> Iterator[McpServer]:
    """The fully configured server, shared by the whole session (it keeps no state between calls)."""
    app = create_app(settings_factory())
    with serve(app) as server:
        yield McpServer(server.url, app)
