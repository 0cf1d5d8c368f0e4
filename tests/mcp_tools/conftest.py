"""mcp-tools served on loopback with every backend pointed at a loopback fake.

- web search: `FakeSearch` (Serper's and SearXNG's JSON), the Serper key configured;
- embeddings: the `upstream` FakeUpstream's `/v1/embeddings` (deterministic, 384 dimensions);
- media-api: a small fake of `GET /v1/media/{id}/content` that serves each file to its owner only;
- API keys: a fake of llm-api's validation endpoint;
- python exec: `FakeSandbox` (SandboxFusion's `/run_code`, really running the code).

Tests talk to it with the official `mcp` client (`mcp_session`) or plain HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import jwt
import mcp_types as types
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from apps.mcp_tools.main import create_app
from apps.mcp_tools.settings import McpToolsSettings
from tests.harness.issuer import TestIssuer
from tests.harness.sandbox import FakeSandbox
from tests.harness.search import SERPER_KEY, FakeSearch
from tests.harness.server import serve, serve_fake
from tests.harness.upstream import FakeUpstream

API_KEY = "sk_test_carol"


@dataclass
class McpServer:
    url: str
    app: FastAPI

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1/mcp"


@dataclass
class FakeMedia:
    """media-api's content endpoint: files keyed by id, each readable by its owner only.

    Like media-api, it answers with a 307 to a presigned URL on the object store (a second server,
    which refuses requests that carry an Authorization header, as S3 does); files whose id ends in
    `p` are streamed through instead, as with `media_proxy_download`.
    """

    files: dict[str, tuple[str, str, bytes]]
    url: str = ""
    store_url: str = ""

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/v1/media/{media_id}/content", self._content, methods=["GET"])
        self.store = FastAPI()
        self.store.add_api_route("/bucket/{media_id}", self._object, methods=["GET"])

    async def _content(self, media_id: str, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            subject = jwt.decode(token, options={"verify_signature": False})["sub"]
        except jwt.PyJWTError:
            return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401)
        entry = self.files.get(media_id)
        if entry is None or entry[0] != subject:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        if media_id.endswith("p"):
            return Response(entry[2], media_type=entry[1])
        return RedirectResponse(f"{self.store_url}/bucket/{media_id}?X-Amz-Signature=abc", status_code=307)

    async def _object(self, media_id: str, request: Request) -> Response:
        if "authorization" in request.headers or "X-Amz-Signature" not in request.query_params:
            return Response(b"<Error><Code>InvalidArgument</Code></Error>", status_code=400)
        _, content_type, content = self.files[media_id]
        return Response(content, media_type=content_type)


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
