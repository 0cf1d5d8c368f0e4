"""Builds the chat side of llm-api: providers, upstream client, conversations, the turn writer.

`configured_providers()` runs when the app is created, so a broken providers file stops start-up with
its message before anything listens. `chat_services()` runs inside the app's lifespan, after the
database engine exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import SecretStr

from apps.common.http import make_client, make_session
from apps.llm_api.providers.config import ProviderConfig, ProvidersFileError, load_providers_file
from apps.llm_api.providers.crypto import KeyBox
from apps.llm_api.providers.plain_http import PlainPool
from apps.llm_api.providers.registry import Provider, ProviderRegistry
from apps.llm_api.providers.upstream import Upstream
from apps.llm_api.routes import (
    admin_providers,
    chat,
    conversations,
    internal_conversations,
    models,
    projects,
)
from apps.llm_api.services.chat import ChatService
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.services.media import MediaResolver
from apps.llm_api.services.persistence import TurnWriter
from apps.llm_api.services.projects import ProjectStore
from apps.llm_api.services.providers import ProviderAdmin
from apps.llm_api.services.response_writes import ResponseWrites
from apps.llm_api.settings import TURN_FLUSHERS, LlmApiSettings

log = logging.getLogger(__name__)


def configured_providers(settings: LlmApiSettings) -> list[Provider]:
    """Providers of the file (in file order), then the one from the environment."""
    providers: list[Provider] = []
    if settings.providers_file is not None:
        for config in load_providers_file(settings.providers_file).providers:
            providers.append(Provider.from_config(config, source="file", rank=len(providers)))
    if settings.default_provider_url:
        key = settings.default_provider_api_key
        config = ProviderConfig(
            name=settings.default_provider_name,
            kind=settings.default_provider_kind,
            base_url=settings.default_provider_url,
            api_key=key.get_secret_value() if key else None,
            catalog=settings.default_provider_catalog,
        )
        if any(p.name == config.name for p in providers):
            raise ProvidersFileError(f"provider '{config.name}' is in the providers file and the environment")
        providers.append(Provider.from_config(config, source="environment", rank=len(providers)))
    return providers


def include_chat_routes(app: FastAPI) -> None:
    for module in (chat, models, conversations, projects, internal_conversations, admin_providers):
        app.include_router(module.router)
    # The token path ahead of FastAPI's router (see routes/chat.py); its declared route stays.
    app.router.routes.insert(0, chat.chat_lane())


@contextlib.asynccontextmanager
async def chat_services(
    app: FastAPI, settings: LlmApiSettings, configured: list[Provider]
) -> AsyncIterator[None]:
    # Model sync: the kit's httpx client. Chat completions and media resolution: aiohttp sessions
    # (and a PlainPool beside the chat one).
    client = make_client(timeout=30.0, connect_timeout=settings.upstream_connect_timeout)
    media_session = make_session(read_timeout=settings.media_resolve_timeout)
    session = make_session(
        max_connections=settings.upstream_max_connections,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        keepalive=settings.upstream_keepalive_seconds,
        decompress=False,  # relayed as the model sent them
    )
    # Completions over plain http:// (see providers/plain_http.py), same bounds: its own
    # `upstream_max_connections` beside the session's (settings.py says so).
    plain = PlainPool(
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        keepalive=settings.upstream_keepalive_seconds,
        max_connections=settings.upstream_max_connections,
    )
    async with client, session, media_session, contextlib.aclosing(plain):
        app.state.telemetry.instrument_httpx(client)
        registry = ProviderRegistry(client, configured)
        # The flushers' share of the pool (`LlmApiSettings._size_pool`), kept between statements.
        store = ConversationStore(app.state.sessions, held_connections=TURN_FLUSHERS)
        admin = ProviderAdmin(app.state.sessions, KeyBox(_secret(settings.model_provider_secret)), registry)
        await admin.reload()
        writer = TurnWriter(store, settings.persistence_queue_size, budget=settings.storage_retry_seconds)
        writer.start()
        app.state.registry = registry
        app.state.conversations = store
        app.state.response_writes = ResponseWrites(app.state.sessions)
        app.state.projects = ProjectStore(app.state.sessions)
        app.state.provider_admin = admin
        app.state.chat = ChatService(
            registry=registry,
            upstream=Upstream(session, plain),
            store=store,
            writer=writer,
            media=MediaResolver(media_session, settings.media_resolve_url, settings.media_resolve_timeout),
            history_max_items=settings.history_max_items,
        )
        sync = _periodic_sync(admin, settings.model_sync_interval_seconds)
        try:
            yield
        finally:
            if sync is not None:
                sync.cancel()
            try:
                await writer.stop()
            finally:
                store.release_connections()  # before the engine is disposed


def _periodic_sync(admin: ProviderAdmin, interval: float) -> asyncio.Task[None] | None:
    if interval <= 0:
        return None

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await admin.reload()
            except Exception:  # the next round tries again; serving goes on with the last good list
                log.exception("provider sync failed")

    return asyncio.create_task(loop(), name="provider-sync")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
