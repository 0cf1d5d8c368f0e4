"""Fixtures for response-api: its peers on loopback, the app itself, and official clients.

`peers` (with `MODEL`, the model name the tests ask for) is the one place that decides what stands
behind `LLM_API_URL` and `MCP_TOOLS_URL`:

- llm-api is the real app, with the harness's OpenAI-compatible `FakeUpstream` as its only provider
  (`fake`), so tests script the model with `upstream.enqueue(Reply(...))`; it owns conversations,
  which response-api reads and extends through its internal routes (hence `INTERNAL_TOKEN` on both),
  and `llm` / `other_llm` are official clients of it;
- mcp-tools is an MCP server built with the official SDK (`FakeMcpTools`: cheap, slow and failing
  tools), for the loop's fault cases. The real mcp-tools app (python exec backed by the harness's
  `FakeSandbox`) is `real_mcp_tools`, used by `test_real_tools.py`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from openai import AsyncOpenAI
from pydantic import SecretStr

from apps.llm_api.main import create_app as create_llm_api
from apps.llm_api.settings import LlmApiSettings
from apps.mcp_tools.main import create_app as create_mcp_tools
from apps.mcp_tools.settings import McpToolsSettings
from apps.response_api.main import create_app
from apps.response_api.settings import ResponseApiSettings
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MAX_DEPTH, TOOL_TIMEOUT, Peers, ServerFactory, auth_settings
from tests.harness.sandbox import FakeSandbox
from tests.harness.server import serve, serve_fake
from tests.harness.upstream import FakeUpstream


@pytest.fixture(scope="session")
def mcp_tools_server() -> Iterator[FakeMcpTools]:
    with serve_fake(FakeMcpTools()) as fake:
        yield fake


@pytest.fixture
def mcp_tools(mcp_tools_server: FakeMcpTools) -> FakeMcpTools:
    mcp_tools_server.reset()
    return mcp_tools_server


class AuthorizationRecorder:
    """Wraps an ASGI app and keeps the `Authorization` header, method and path of every HTTP request
    it serves; a test can hold the creation of new conversations at its `gate`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []
        self.requests: list[str] = []
        self.gate: CreateGate | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.extend(v.decode() for k, v in scope["headers"] if k == b"authorization")
            self.requests.append(f"{scope['method']} {scope['path']}")
            gate = self.gate
            if gate is not None and scope["method"] == "POST" and b"create=true" in scope["query_string"]:
                if not await gate.passes():
                    await JSONResponse({"error": {"message": "away"}}, status_code=503)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


@dataclass
class CreateGate:
    """Holds llm-api's creation of a new conversation (`POST .../items?create=true`) until `opened`
    is set; then every creation passes, or is answered 503 (llm-api away) when `refuse` is set."""

    opened: threading.Event = field(default_factory=threading.Event)
    refuse: bool = False
    waiting: int = 0

    def fail_from_now(self) -> None:
        """llm-api stays away for longer than any storage budget: the held creation and every retry fail."""
        self.refuse = True
        self.opened.set()

    async def passes(self) -> bool:
        self.waiting += 1
        await asyncio.to_thread(self.opened.wait, 60)
        return not self.refuse


@pytest.fixture
def create_gate(llm_api_server: tuple[str, AuthorizationRecorder]) -> Iterator[CreateGate]:
    recorder = llm_api_server[1]
    recorder.gate = gate = CreateGate()
    try:
        yield gate
    finally:
        gate.opened.set()
        recorder.gate = None


@pytest.fixture(scope="session")
def llm_api_server(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream
) -> Iterator[tuple[str, AuthorizationRecorder]]:
    settings = LlmApiSettings(
        database_url=SecretStr(database_url),
        auth=auth_settings(issuer),
        default_provider_url=upstream_server.base_url,
        default_provider_name="fake",
        model_sync_interval_seconds=0,
        log_format="console",
    )
    recorder = AuthorizationRecorder(create_llm_api(settings))
    with serve(recorder) as server:
        yield server.url, recorder


@pytest.fixture(scope="session")
def peers(llm_api_server: tuple[str, AuthorizationRecorder], mcp_tools_server: FakeMcpTools) -> Peers:
    """llm-api and mcp-tools as response-api reaches them."""
    url, recorder = llm_api_server
    return Peers(
        llm_api_url=url,
        mcp_tools_url=mcp_tools_server.url,
        llm_api_authorizations=lambda: recorder.seen,
        llm_api_requests=lambda: recorder.requests,
    )


@pytest.fixture(scope="session")
def real_mcp_tools(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream, sandbox_server: FakeSandbox
) -> Iterator[str]:
    """The real mcp-tools app on loopback; its URL."""
    settings = McpToolsSettings(
        database_url=SecretStr(database_url),
        auth=issuer.auth_settings(),
        sandbox_fusion_url=sandbox_server.url,
        sandbox_timeout_seconds=30.0,
        embeddings_url=upstream_server.base_url,
        embeddings_model="fake-embedding",
        mcp_providers_file=None,
        log_format="console",
    )
    with serve(create_mcp_tools(settings)) as server:
        yield server.url


@pytest.fixture(scope="session")
def response_api_server(database_url: str, issuer: TestIssuer, peers: Peers) -> ServerFactory:
    """Start response-api on loopback with test settings (plus overrides); yields its URL."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[str]:
        values: dict[str, Any] = {
            "database_url": SecretStr(database_url),
            "auth": auth_settings(issuer),
            "llm_api_url": peers.llm_api_url,
            "mcp_tools_url": peers.mcp_tools_url,
            "max_tool_execution_depth": MAX_DEPTH,
            "tool_execution_timeout": TOOL_TIMEOUT,
            "log_format": "console",
        }
        values.update(overrides)
        with serve(create_app(ResponseApiSettings(**values))) as server:
            yield server.url

    return start


@pytest.fixture(scope="session")
def response_api_url(response_api_server: ServerFactory) -> Iterator[str]:
    with response_api_server() as url:
        yield url


@pytest.fixture
def token(issuer: TestIssuer) -> str:
    return issuer.mint("alice")


@pytest.fixture
async def client(response_api_url: str, token: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{response_api_url}/v1", api_key=token, max_retries=0) as openai:
        yield openai


@pytest.fixture
async def other_client(response_api_url: str, issuer: TestIssuer) -> AsyncIterator[AsyncOpenAI]:
    key = issuer.mint("mallory")
    async with AsyncOpenAI(base_url=f"{response_api_url}/v1", api_key=key, max_retries=0) as openai:
        yield openai


@pytest.fixture
async def llm(peers: Peers, token: str) -> AsyncIterator[AsyncOpenAI]:
    """The same user as `client`, talking to llm-api (conversations, chat completions)."""
    async with AsyncOpenAI(base_url=f"{peers.llm_api_url}/v1", api_key=token, max_retries=0) as openai:
        yield openai


@pytest.fixture
async def other_llm(peers: Peers, issuer: TestIssuer) -> AsyncIterator[AsyncOpenAI]:
    key = issuer.mint("mallory")
    async with AsyncOpenAI(base_url=f"{peers.llm_api_url}/v1", api_key=key, max_retries=0) as openai:
        yield openai
