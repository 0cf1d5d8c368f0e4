"""Items a response adds to a conversation, as response-api sends them to the internal routes.

These are OpenAI's Responses item shapes (the ones `conversations.items.list` returns at OpenAI):
`message`, `function_call`, `function_call_output`, `mcp_call`, `mcp_list_tools`, and the MCP
approval pair `mcp_approval_request` / `mcp_approval_response`, told apart by `type`. Unlike the
public `POST /v1/conversations/{id}/items` (OpenAI's 20-item, three-kind surface), a response
appends all of its items in one call, keeps their ids (so a response's output item and the
conversation item are the same object), and keeps the OpenAI fields we do not model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from apps.llm_api.services.conversations import NewItem

MAX_ITEMS_PER_RESPONSE = 2000
MAX_ITEMS_PER_IMPORT = 20000

# Kept as columns (or derived), not in the stored body.
_NOT_IN_BODY = frozenset({"id", "type", "role", "status", "object", "created_at"})


class _Item(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr | None = Field(None, min_length=1, max_length=64)
    status: StrictStr | None = Field(None, max_length=20)


class MessageItem(_Item):
    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    content: list[dict[str, Any]]


class FunctionCallItem(_Item):
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr


class FunctionCallOutputItem(_Item):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[dict[str, Any]]


class McpCallItem(_Item):
    type: Literal["mcp_call"]
    server_label: StrictStr
    name: StrictStr
    arguments: StrictStr
    output: StrictStr | None = None
    error: Any = None


class McpListToolsItem(_Item):
    type: Literal["mcp_list_tools"]
    server_label: StrictStr
    tools: list[dict[str, Any]]
    error: Any = None


class McpApprovalRequestItem(_Item):
    type: Literal["mcp_approval_request"]
    server_label: StrictStr
    name: StrictStr
    arguments: StrictStr


class McpApprovalResponseItem(_Item):
    type: Literal["mcp_approval_response"]
    approval_request_id: StrictStr
    approve: bool
    reason: StrictStr | None = None


AnyResponseItem = (
    MessageItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | McpCallItem
    | McpListToolsItem
    | McpApprovalRequestItem
    | McpApprovalResponseItem
)
ResponseItem = Annotated[AnyResponseItem, Field(discriminator="type")]


class AppendItems(BaseModel):
    """`POST /internal/conversations/{id}/items`: one response's input and output items, in order
    (none only when the call creates the conversation: the route checks)."""

    model_config = ConfigDict(extra="forbid")

    items: list[ResponseItem] = Field(max_length=MAX_ITEMS_PER_RESPONSE)


class ImportedItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    created_at: datetime
    item: ResponseItem


class ImportConversation(BaseModel):
    """`POST /internal/conversations/import`: a conversation response-api kept before llm-api owned them."""

    model_config = ConfigDict(extra="forbid")

    id: StrictStr = Field(pattern=r"^conv_[A-Za-z0-9_-]{1,59}$")
    user_id: StrictStr = Field(min_length=1, max_length=255)
    created_at: datetime
    items: list[ImportedItem] = Field(max_length=MAX_ITEMS_PER_IMPORT)


def stored_item(item: AnyResponseItem, created_at: datetime | None = None) -> NewItem:
    """The item as a row to insert: its id kept when it has one, everything else in the body."""
    data = item.model_dump()
    body = {"type": item.type, **{k: v for k, v in data.items() if k not in _NOT_IN_BODY}}
    if isinstance(item, MessageItem):
        body["role"] = item.role
    new = NewItem(body, status=item.status or "completed", created_at=created_at, keep_id=item.id is not None)
    if item.id is not None:
        new.public_id = item.id
    return new
