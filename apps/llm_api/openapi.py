"""The bodies of llm-api's routes that build their JSON themselves, for its OpenAPI document.

Documentation only (`apps.common.openapi.document_models`): the routes keep returning their dicts.
Every model accepts more fields than it names, as OpenAI's objects grow and items carry their
type's own fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from apps.common.openapi import ErrorStatuses, ResponseModels
from apps.llm_api.providers.catalog import Capabilities, ModelCatalog


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Conversation(Open):
    id: str
    object: Literal["conversation"]
    created_at: int
    title: str | None = None
    metadata: dict[str, Any]
    project_id: str | None = None


class Project(Open):
    """A project: its instructions are put before every chat turn and response of its conversations
    (as a system message, never stored as an item). Deleting a project keeps its conversations and
    detaches them (`project_id` becomes null)."""

    id: str
    object: Literal["project"]
    name: str
    instructions: str | None = None
    metadata: dict[str, Any]
    created_at: int
    updated_at: int


class ProjectDeleted(Open):
    """The project is gone; its conversations remain, with `project_id: null`."""

    id: str
    object: Literal["project.deleted"]
    deleted: bool


class ConversationDeleted(Open):
    id: str
    object: Literal["conversation.deleted"]
    deleted: bool


class ConversationItem(Open):
    id: str
    object: Literal["conversation.item"]
    type: str
    status: str | None = None
    created_at: int


class Page(Open):
    object: Literal["list"]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ConversationList(Page):
    data: list[Conversation]


class ProjectList(Page):
    data: list[Project]


class ConversationItemList(Page):
    data: list[ConversationItem]


class ModelProvider(Open):
    id: str
    name: str
    kind: str


class Model(Open):
    """OpenAI's model object plus its catalog metadata and the provider that serves it; a capability
    nobody declared is `false` ("not declared")."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str | None = None
    aliases: list[str] = []
    context_length: int | None = None
    max_output_tokens: int | None = None
    capabilities: Capabilities | None = None
    description: str | None = None
    provider: ModelProvider | None = None


class ModelList(Open):
    object: Literal["list"]
    data: list[Model]


class Provider(Open):
    id: str
    object: Literal["provider"]
    name: str
    kind: str
    vendor: str | None = None
    base_url: str | None = None
    active: bool
    source: str
    api_key_hint: str | None = None
    models: list[str]
    catalog: dict[str, ModelCatalog] = {}


class ProviderList(Open):
    object: Literal["list"]
    data: list[Provider]


class ProviderDeleted(Open):
    id: str
    object: Literal["provider.deleted"]
    deleted: bool


class ChatCompletion(Open):
    """A `chat.completion` (or, with `stream: true`, `chat.completion.chunk` events as SSE)."""

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
    ("GET", "/v1/conversations"): ConversationList,
    ("GET", _CONVERSATION): Conversation,
    ("POST", _CONVERSATION): Conversation,
    ("DELETE", _CONVERSATION): ConversationDeleted,
    ("GET", _ITEMS): ConversationItemList,
    ("POST", _ITEMS): ConversationItemList,
    ("GET", f"{_ITEMS}/{{item_id}}"): ConversationItem,
    ("DELETE", f"{_ITEMS}/{{item_id}}"): Conversation,
    ("POST", "/v1/projects"): Project,
    ("GET", "/v1/projects"): ProjectList,
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
