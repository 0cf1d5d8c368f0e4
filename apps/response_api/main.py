"""The response-api application factory.

The lifespan builds the database engine, the llm-api client (one aiohttp session for chat
completions, whose read timeout is the longest silence allowed while a model streams, and for
conversations, which llm-api owns, whose calls state a shorter one), the MCP connection pool, the
registry of running responses and the listener for what other replicas send (cancels, and the
notices that wake followers of a resumable stream), the sweeper that fails responses a dead process
left running, and the one-shot copy of this app's former conversations to llm-api
(`services/legacy.py`, migration 0003); then the startup heap is frozen (apps/common/heap.py) so
full garbage collections stop walking it on the request path. On shutdown, responses still running
are stopped and recorded as failed before the pools close.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from fastapi import FastAPI

from apps.common.heap import freeze_startup_heap
from apps.common.http import make_session
from apps.common.openapi import document_models
from apps.common.service import open_database, service_app
from apps.response_api.openapi import ERROR_STATUSES, RESPONSE_MODELS
from apps.response_api.routes.responses import router as responses_router
from apps.response_api.services.cancel_bus import CHANNEL, EVENTS_CHANNEL, NotifyListener
from apps.response_api.services.conversations import Conversations
from apps.response_api.services.events import EventHub
from apps.response_api.services.execution import ServiceConfig
from apps.response_api.services.legacy import copy_legacy_conversations
from apps.response_api.services.llm import LlmClient
from apps.response_api.services.loop import Limits
from apps.response_api.services.mcp import McpConnector
from apps.response_api.services.responses import ResponseService
from apps.response_api.services.runs import RunRegistry
from apps.response_api.services.store import ResponseStore
from apps.response_api.settings import ResponseApiSettings

log = logging.getLogger(__name__)


def create_app(settings: ResponseApiSettings | None = None) -> FastAPI:
    settings = settings or ResponseApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, settings) as engine:
            database_url = engine.url.render_as_string(hide_password=False)
            registry = RunRegistry(settings.max_running_responses)
            hub = EventHub()
            listener = NotifyListener(
                database_url, {CHANNEL: registry.cancel_soon, EVENTS_CHANNEL: hub.notified}
            )
            await listener.begin()
            mcp_pool = httpx2.AsyncHTTPTransport(
                limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50)
            )
            store = ResponseStore(engine)
            token = settings.auth.internal_token
            # One pool to llm-api for its model rounds and its conversations: each conversation call
            # states its own (shorter) read timeout.
            async with make_session(read_timeout=settings.llm_read_timeout) as llm_http:
                conversations = Conversations(
                    llm_http,
                    settings.llm_api_url,
                    token.get_secret_value() if token is not None else None,
                )
                app.state.responses = ResponseService(
                    store=store,
                    registry=registry,
                    hub=hub,
                    llm=LlmClient(llm_http, settings.llm_api_url),
                    conversations=conversations,
                    mcp=McpConnector(
                        settings.mcp_tools_url, mcp_pool, read_timeout=settings.tool_execution_timeout + 5
                    ),
                    config=ServiceConfig(
                        limits=Limits(settings.max_tool_execution_depth, settings.tool_execution_timeout),
                        deadline=settings.response_deadline,
                        offer_mcp_by_default=settings.offer_mcp_tools_by_default,
                        server_label=settings.mcp_server_label,
                        tools_cache_seconds=settings.mcp_tools_cache_seconds,
                        storage_budget=settings.storage_retry_seconds,
                        background_storage_budget=settings.background_storage_retry_seconds,
                        event_flush_seconds=settings.event_log_flush_seconds,
                        follow_quiet_seconds=settings.stream_follow_quiet_seconds,
                    ),
                )
                # Nothing legitimately runs past the deadline plus one tool timeout; leave a minute's slack.
                orphan_age = settings.response_deadline + settings.tool_execution_timeout + 60
                sweeper = asyncio.create_task(_sweep_orphans(store, orphan_age))
                legacy = asyncio.create_task(copy_legacy_conversations(engine, conversations))
                freeze_startup_heap()
                try:
                    yield
                finally:
                    sweeper.cancel()
                    legacy.cancel()
                    await listener.stop()
                    await registry.shutdown()
                    await app.state.responses.close()
                    await mcp_pool.aclose()

    app = service_app(settings, title="response-api", lifespan=lifespan)
    app.include_router(responses_router)
    document_models(app, RESPONSE_MODELS, ERROR_STATUSES)
    return app


async def _sweep_orphans(
    store: ResponseStore, older_than_seconds: float, every_seconds: float = 60.0
) -> None:
    while True:
        try:
            swept = await store.fail_orphans(older_than_seconds)
        except Exception:  # a sweep must never take the app down; the next one retries
            log.warning("sweeping interrupted responses failed", exc_info=True)
        else:
            if swept:
                log.info("marked interrupted responses as failed", extra={"count": swept})
        await asyncio.sleep(every_seconds)
