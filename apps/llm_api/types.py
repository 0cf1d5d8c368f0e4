"""The objects llm-api's routes answer with: conversations, their items, projects, models and
providers, in OpenAI's shapes where OpenAI has one (openai-python's `types/` is the model).

TypedDicts, not models: the routes build their JSON from rows and return it as is
(`response_model=None`), so a type costs nothing per request and FastAPI neither re-validates nor
drops the fields an object carries beyond the ones named here. They come from `typing_extensions`
so that pydantic can read them for the OpenAPI document (`apps/llm_api/openapi.py`), which is
written from these same types.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, NotRequired, TypeVar

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

# The item kinds a conversation holds: the three of the public items API and chat turns, and the
# MCP items a response adds (`wire/response_items.py` refuses any other `type`).
ItemType = Literal[
    "message",
    "function_call",
    "function_call_output",
    "mcp_call",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
]
# A message item's `role` (a chat turn's `tool` messages are stored as `function_call_output`).
MessageRole = Literal["system", "developer", "user", "assistant"]
# Where a provider is defined: the providers file, the environment, or the admin API.
ProviderSource = Literal["file", "environment", "admin"]


class Conversation(TypedDict):
    id: str
    object: Literal["conversation"]
    created_at: int
    title: str | None
    metadata: dict[str, str]
    project_id: str | None


class ConversationContext(Conversation):
    """What response-api reads of a conversation (`GET /internal/conversations/{id}`)."""

    project_instructions: str | None


@with_config(ConfigDict(extra="allow"))
class ConversationItem(TypedDict):
    """An item, with the fields of its `type` beside these (a message's `content`, a call's
    `call_id`, `name` and `arguments`, …), as OpenAI's Conversations API answers them; a chat turn's
    answer also carries how it ended (`finish_reason`, `usage`, `incomplete_details`)."""

    id: str
    object: Literal["conversation.item"]
    type: ItemType
    status: str  # what stored it said: `completed`, `incomplete`, or a response's item status
    role: NotRequired[MessageRole]  # messages only
    finish_reason: NotRequired[str]
    usage: NotRequired[dict[str, Any]]  # the model server's, as it reported it
    incomplete_details: NotRequired[dict[str, Any]]
    created_at: int


class Identified(TypedDict):
    id: str


T = TypeVar("T", bound=Identified)


class Page(TypedDict, Generic[T]):
    """A page of a list, oldest or newest first (`order`); `after=last_id` asks for the next one."""

    object: Literal["list"]
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class ItemReplay(Page[ConversationItem]):
    """What response-api continues a conversation from (`GET /internal/conversations/{id}/items`)."""

    project_instructions: str | None


class ConversationDeleted(TypedDict):
    id: str
    object: Literal["conversation.deleted"]
    deleted: bool


class ConversationImported(TypedDict):
    id: str
    object: Literal["conversation.import"]
    created: bool  # false: it was imported before


class Project(TypedDict):
    """A project: its instructions are put before every chat turn and response of its conversations
    (as a system message, never stored as an item). Deleting a project keeps its conversations and
    detaches them (`project_id` becomes null)."""

    id: str
    object: Literal["project"]
    name: str
    instructions: str | None
    metadata: dict[str, str]
    created_at: int
    updated_at: int


class ProjectDeleted(TypedDict):
    """The project is gone; its conversations remain, with `project_id: null`."""

    id: str
    object: Literal["project.deleted"]
    deleted: bool


class ModelCapabilities(TypedDict):
    """What the catalog declares a model can do; `false` means "not declared"."""

    tools: bool
    vision: bool
    reasoning: bool


class CatalogEntry(TypedDict):
    """A model's catalog metadata (`providers/catalog.py`, whose `ModelCatalog` it is the JSON of)."""

    context_length: int | None
    max_output_tokens: int | None
    capabilities: ModelCapabilities
    description: str | None


class ModelProvider(TypedDict):
    id: str
    name: str
    kind: str


class Model(CatalogEntry):
    """OpenAI's model object plus its catalog metadata and the provider that serves it; `aliases` are
    the slash-free names that also select it."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    aliases: list[str]
    provider: ModelProvider


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[Model]


class Provider(TypedDict):
    """A model provider, as the admin API shows it: never its key, only the key's last characters."""

    id: str
    object: Literal["provider"]
    name: str
    kind: str
    vendor: str
    base_url: str
    active: bool
    source: ProviderSource
    api_key_hint: str | None
    models: list[str]  # the public ids of the models it serves
    catalog: dict[str, CatalogEntry]


class ProviderList(TypedDict):
    object: Literal["list"]
    data: list[Provider]


class ProviderDeleted(TypedDict):
    id: str
    object: Literal["provider.deleted"]
    deleted: bool
