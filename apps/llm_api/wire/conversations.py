"""Conversation and item shapes, as in OpenAI's Conversations API (plus `title` and item usage)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictStr, Tag

from apps.llm_api.chat_tables import ConversationRow, ItemRow
from apps.llm_api.services.conversations import NewItem
from apps.llm_api.services.items import content_parts
from apps.llm_api.types import Conversation, ConversationItem, Page, T

MAX_ITEMS_PER_CALL = 20
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]], Field(max_length=16)
]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["input_text", "output_text", "text", "input_image", "input_file", "refusal"]
    text: StrictStr | None = None


class MessageItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | list[ContentPart]


class FunctionCallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr


class FunctionCallOutputIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr


def _item_type(value: Any) -> str:
    """OpenAI accepts a message without `type` (`{"role", "content"}`); so do we."""
    found = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return str(found)


ItemIn = Annotated[
    Annotated[MessageItemIn, Tag("message")]
    | Annotated[FunctionCallIn, Tag("function_call")]
    | Annotated[FunctionCallOutputIn, Tag("function_call_output")],
    Discriminator(_item_type),
]


ProjectId = Annotated[StrictStr, Field(max_length=64)]


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: StrictStr | None = Field(None, max_length=256)
    metadata: Metadata | None = None
    project_id: ProjectId | None = None
    items: list[ItemIn] = Field(default_factory=list, max_length=MAX_ITEMS_PER_CALL)


class ConversationUpdate(BaseModel):
    """`project_id` moves the conversation to that project; `null` takes it out of its project."""

    model_config = ConfigDict(extra="forbid")

    title: StrictStr | None = Field(None, max_length=256)
    metadata: Metadata | None = None
    project_id: ProjectId | None = None


class ItemsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS_PER_CALL)


def new_item(item: MessageItemIn | FunctionCallIn | FunctionCallOutputIn) -> NewItem:
    if isinstance(item, MessageItemIn):
        content: Any = (
            item.content
            if isinstance(item.content, str)
            else [p.model_dump(exclude_none=True) for p in item.content]
        )
        return NewItem({"type": "message", "role": item.role, "content": content_parts(item.role, content)})
    return NewItem(item.model_dump())


def conversation_json(row: ConversationRow) -> Conversation:
    return {
        "id": row.public_id,
        "object": "conversation",
        "created_at": int(row.created_at.timestamp()),
        "title": row.title,
        "metadata": row.metadata_ or {},
        "project_id": row.project_id,
    }


def item_json(row: ItemRow) -> ConversationItem:
    item: dict[str, Any] = {
        "id": row.public_id,
        "object": "conversation.item",
        "type": row.type,
        "status": row.status,
    }
    if row.role is not None:
        item["role"] = row.role
    item.update(row.body)
    if row.finish_reason is not None:
        item["finish_reason"] = row.finish_reason
    if row.usage is not None:
        item["usage"] = row.usage
    if row.incomplete_details is not None:
        item["incomplete_details"] = row.incomplete_details
    item["created_at"] = int(row.created_at.timestamp())
    # The stored body holds the fields of the item's type, which the type does not name.
    return cast(ConversationItem, item)


def page_json(data: list[T], has_more: bool) -> Page[T]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
