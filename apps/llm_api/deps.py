"""Request dependencies of llm-api: the services built in the lifespan, read from `app.state`
through the kit's `async def` dependencies (`apps.common.state`: no thread hop per request)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from apps.common.state import state_dependency
from apps.llm_api.providers.registry import ProviderRegistry
from apps.llm_api.services.chat import ChatService
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.services.paging import Order
from apps.llm_api.services.projects import ProjectStore
from apps.llm_api.services.providers import ProviderAdmin
from apps.llm_api.services.response_writes import ResponseWrites

ChatDep = Annotated[ChatService, Depends(state_dependency("chat", ChatService))]
ConversationsDep = Annotated[ConversationStore, Depends(state_dependency("conversations", ConversationStore))]
ResponseWritesDep = Annotated[ResponseWrites, Depends(state_dependency("response_writes", ResponseWrites))]
ProjectsDep = Annotated[ProjectStore, Depends(state_dependency("projects", ProjectStore))]
RegistryDep = Annotated[ProviderRegistry, Depends(state_dependency("registry", ProviderRegistry))]
ProviderAdminDep = Annotated[ProviderAdmin, Depends(state_dependency("provider_admin", ProviderAdmin))]

# The paging parameters of every list route.
Limit = Annotated[int, Query(ge=1, le=100)]
OrderQuery = Annotated[Order, Query()]
