"""The mcp-tools application factory.

The MCP server object and its `/v1/mcp` route are made here (the route needs the SDK's session
manager); every client, pool and backend is built in the lifespan and kept on `app.state.tools`.
One outbound HTTP client is shared by the backends, each call stating its own timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from apps.common.db import session_factory
from apps.common.heap import freeze_startup_heap
from apps.common.http import make_client
from apps.common.safe_fetch import FetchPolicy, SafeFetcher
from apps.common.service import open_database, service_app
from apps.mcp_tools.openapi import mcp_paths
from apps.mcp_tools.server import build_mcp_server, mcp_endpoint
from apps.mcp_tools.services.embeddings import Embedder, LocalEmbeddings, RemoteEmbeddings, bundled_model_dir
from apps.mcp_tools.services.file_search import FileSearch, MediaClient
from apps.mcp_tools.services.providers import ProviderBridge, load_providers
from apps.mcp_tools.services.sandbox import Sandbox
from apps.mcp_tools.services.scrape import Scraper, SerperScraper
from apps.mcp_tools.services.search import SearchEngineClient, SearxngClient, SerperClient, WebSearch
from apps.mcp_tools.settings import McpToolsSettings
from apps.mcp_tools.tools.context import ToolServices

MCP_PATH = "/v1/mcp"


def create_app(settings: McpToolsSettings | None = None) -> FastAPI:
    settings = settings or McpToolsSettings()
    server = build_mcp_server(settings.version)
    endpoint = mcp_endpoint(server, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            open_database(app, settings) as engine,
            make_client(timeout=settings.search_timeout_seconds) as http,
        ):
            app.state.telemetry.instrument_httpx(http)
            app.state.tools = await build_services(settings, http, session_factory(engine))
            async with endpoint.run():
                freeze_startup_heap()  # full collections stay off the tool calls
                yield

    app = service_app(
        settings,
        title="mcp-tools",
        lifespan=lifespan,
        max_body_bytes=settings.mcp_max_body_bytes,
        openapi_paths=mcp_paths(MCP_PATH),
    )
    # POST only: a stateless server has no session to DELETE and no server-initiated stream to GET.
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, methods=["POST"]))
    return app


async def build_services(
    settings: McpToolsSettings, http: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> ToolServices:
    bridge = ProviderBridge(load_providers(settings.mcp_providers_file))
    await bridge.discover()
    return ToolServices(
        search=WebSearch(search_engines(settings, http), settings.search_timeout_seconds),
        scraper=Scraper(scrape_fetcher(settings), serper_scraper(settings, http)),
        files=FileSearch(
            sessions,
            embedder(settings, http),
            MediaClient(http, settings.media_api_url, settings.file_max_bytes),
        ),
        sandbox=Sandbox(http, settings.sandbox_fusion_url, settings.sandbox_timeout_seconds),
        bridge=bridge,
        progress_seconds=settings.tool_progress_seconds,
    )


def search_engines(settings: McpToolsSettings, http: httpx.AsyncClient) -> list[SearchEngineClient]:
    engines: list[SearchEngineClient] = []
    for name in settings.search_engines:
        if name == "serper" and settings.serper_api_key:
            engines.append(
                SerperClient(http, settings.serper_url, settings.serper_api_key.get_secret_value())
            )
        elif name == "searxng" and settings.searxng_url:
            engines.append(SearxngClient(http, settings.searxng_url))
    return engines


def scrape_fetcher(settings: McpToolsSettings) -> SafeFetcher:
    policy = FetchPolicy(
        max_bytes=settings.scrape_max_bytes,
        timeout_seconds=settings.scrape_timeout_seconds,
        allow=settings.scrape_allow,
    )
    return SafeFetcher(policy)


def serper_scraper(settings: McpToolsSettings, http: httpx.AsyncClient) -> SerperScraper | None:
    if not (settings.serper_scrape_url and settings.serper_api_key):
        return None
    key = settings.serper_api_key.get_secret_value()
    return SerperScraper(http, settings.serper_scrape_url, key, settings.scrape_timeout_seconds)


def embedder(settings: McpToolsSettings, http: httpx.AsyncClient) -> Embedder | None:
    if settings.embeddings_url:
        key = settings.embeddings_api_key.get_secret_value() if settings.embeddings_api_key else None
        return RemoteEmbeddings(
            http, settings.embeddings_url, settings.embeddings_model, key, settings.embeddings_timeout_seconds
        )
    model_dir = bundled_model_dir() if settings.embeddings_local else None
    return LocalEmbeddings(model_dir) if model_dir else None
