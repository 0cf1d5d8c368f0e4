"""Request dependencies of llm-api: the services built in the lifespan, read from `app.state`.

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a worker thread, a thread
hop per request on the hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from apps.llm_api.providers.registry import ProviderRegistry
from apps.llm_api.services.chat import ChatService
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.services.projects import ProjectStore
from apps.llm_api.services.providers import ProviderAdmin


async def _chat(request: Request) -> ChatService:
    service: ChatService = request.app.state.chat
    return service


async def _conversations(request: Request) -> ConversationStore:
    store: ConversationStore = request.app.state.conversations
    return store


async def _projects(request: Request) -> ProjectStore:
    store: ProjectStore = request.app.state.projects
    return store


async def _registry(request: Request) -> ProviderRegistry:
    registry: ProviderRegistry = request.app.state.registry
    return registry


async def _provider_admin(request: Request) -> ProviderAdmin:
    admin: ProviderAdmin = request.app.state.provider_admin
    return admin


ChatDep = Annotated[ChatService, Depends(_chat)]
ConversationsDep = Annotated[ConversationStore, Depends(_conversations)]
ProjectsDep = Annotated[ProjectStore, Depends(_projects)]
RegistryDep = Annotated[ProviderRegistry, Depends(_registry)]
ProviderAdminDep = Annotated[ProviderAdmin, Depends(_provider_admin)]
