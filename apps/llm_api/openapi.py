"""The bodies of llm-api's routes that build their JSON themselves, for its OpenAPI document.

Documentation only (`apps.common.openapi.document_models`): the routes return their JSON as built.
The schemas are the types the JSON is built with (`apps/llm_api/types.py`), so the document and the
code cannot drift apart. Like OpenAI's objects, they may carry fields they do not name (an item
carries its type's own fields).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from apps.common.openapi import ErrorStatuses, ResponseModels
from apps.llm_api.types import (
    Conversation,
    ConversationDeleted,
    ConversationItem,
    Model,
    ModelList,
    Page,
    Project,
    ProjectDeleted,
    Provider,
    ProviderDeleted,
    ProviderList,
)


class ChatCompletion(BaseModel):
    """A `chat.completion` (or, with `stream: true`, `chat.completion.chunk` events as SSE)."""

    model_config = ConfigDict(extra="allow")  # the model server's answer, relayed as it is

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]


_CONVERSATION = "/v1/conversations/{conversation_id}"
_ITEMS = f"{_CONVERSATION}/items"
_PROVIDERS = "/v1/admin/providers"
_PROJECT = "/v1/projects/{project_id}"

RESPONSE_MODELS: ResponseModels = {
    ("POST", "/v1/chat/completions"): ChatCompletion,
    ("GET", "/v1/models"): ModelList,
    ("GET", "/v1/models/{model_id}"): Model,
    ("POST", "/v1/conversations"): Conversation,
    ("GET", "/v1/conversations"): Page[Conversation],
    ("GET", _CONVERSATION): Conversation,
    ("POST", _CONVERSATION): Conversation,
    ("DELETE", _CONVERSATION): ConversationDeleted,
    ("GET", _ITEMS): Page[ConversationItem],
    ("POST", _ITEMS): Page[ConversationItem],
    ("GET", f"{_ITEMS}/{{item_id}}"): ConversationItem,
    ("DELETE", f"{_ITEMS}/{{item_id}}"): Conversation,
    ("POST", "/v1/projects"): Project,
    ("GET", "/v1/projects"): Page[Project],
    ("GET", _PROJECT): Project,
    ("POST", _PROJECT): Project,
    ("PATCH", _PROJECT): Project,
    ("DELETE", _PROJECT): ProjectDeleted,
    ("GET", _PROVIDERS): ProviderList,
    ("POST", _PROVIDERS): Provider,
    ("POST", f"{_PROVIDERS}/sync"): ProviderList,
    ("GET", f"{_PROVIDERS}/{{provider_id}}"): Provider,
    ("PATCH", f"{_PROVIDERS}/{{provider_id}}"): Provider,
    ("DELETE", f"{_PROVIDERS}/{{provider_id}}"): ProviderDeleted,
}

# Statuses beyond those every route of its shape answers (see apps.common.openapi).
ERROR_STATUSES: ErrorStatuses = {
    # An unknown model; the model server's or media-api's failure; a model that does not answer.
    ("POST", "/v1/chat/completions"): (404, 502, 504),
    ("POST", "/v1/auth/api-keys"): (403,),  # guests may not create keys
    ("POST", _PROVIDERS): (409,),
    ("POST", "/v1/conversations"): (404,),  # a `project_id` that is not the caller's
}
