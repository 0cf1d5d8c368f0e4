"""Conversations and their items, in OpenAI's Conversations API shapes; every call is owner-scoped.

Beyond OpenAI's shapes: a conversation may belong to one of the caller's projects (`project_id` on
create and update, `?project_id=` to list one project's conversations). A project that is not the
caller's is a 404 naming `project_id`, as a missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from apps.common.auth.principal import Principal, PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.chat_tables import ConversationRow
from apps.llm_api.deps import ConversationsDep, Limit, OrderQuery
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.types import Conversation, ConversationDeleted, ConversationItem, Page
from apps.llm_api.wire.conversations import (
    ConversationCreate,
    ConversationUpdate,
    ItemsCreate,
    conversation_json,
    item_json,
    new_item,
    page_json,
)

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], route_class=GuardedRoute)


def _missing(conversation_id: str) -> APIError:
    return APIError(404, f"Conversation '{conversation_id}' not found.", code="not_found")


async def _owned(store: ConversationStore, principal: Principal, conversation_id: str) -> ConversationRow:
    conversation = await store.get(principal.user_id, conversation_id)
    if conversation is None:
        raise _missing(conversation_id)
    return conversation


@router.post("", response_model=None)
async def create_conversation(
    body: ConversationCreate, principal: PrincipalDep, store: ConversationsDep
) -> Conversation:
    row = await store.create(
        principal.user_id,
        title=body.title,
        metadata=body.metadata,
        items=[new_item(i) for i in body.items],
        project_id=body.project_id,
    )
    return conversation_json(row)


@router.get("", response_model=None)
async def list_conversations(
    principal: PrincipalDep,
    store: ConversationsDep,
    limit: Limit = 20,
    order: OrderQuery = "desc",
    after: str | None = None,
    project_id: Annotated[str | None, Query(description="Only the conversations of this project.")] = None,
) -> Page[Conversation]:
    page = await store.list_conversations(
        principal.user_id, limit=limit, after=after, order=order, project_id=project_id
    )
    return page_json([conversation_json(row) for row in page.rows], page.has_more)


@router.get("/{conversation_id}", response_model=None)
async def get_conversation(
    conversation_id: str, principal: PrincipalDep, store: ConversationsDep
) -> Conversation:
    return conversation_json(await _owned(store, principal, conversation_id))


@router.post("/{conversation_id}", response_model=None)
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, principal: PrincipalDep, store: ConversationsDep
) -> Conversation:
    row = await store.update(
        principal.user_id,
        conversation_id,
        title=body.title,
        metadata=body.metadata,
        project_id=body.project_id if "project_id" in body.model_fields_set else ...,
    )
    if row is None:
        raise _missing(conversation_id)
    return conversation_json(row)


@router.delete("/{conversation_id}", response_model=None)
async def delete_conversation(
    conversation_id: str, principal: PrincipalDep, store: ConversationsDep
) -> ConversationDeleted:
    if not await store.delete(principal.user_id, conversation_id):
        raise _missing(conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@router.get("/{conversation_id}/items", response_model=None)
async def list_items(
    conversation_id: str,
    principal: PrincipalDep,
    store: ConversationsDep,
    limit: Limit = 20,
    order: OrderQuery = "desc",
    after: str | None = None,
) -> Page[ConversationItem]:
    conversation = await _owned(store, principal, conversation_id)
    page = await store.list_items(conversation, limit=limit, after=after, order=order)
    if page is None:
        raise APIError(400, f"No item '{after}' in this conversation.", param="after", code="invalid_cursor")
    return page_json([item_json(row) for row in page.rows], page.has_more)


@router.post("/{conversation_id}/items", response_model=None)
async def create_items(
    conversation_id: str, body: ItemsCreate, principal: PrincipalDep, store: ConversationsDep
) -> Page[ConversationItem]:
    conversation = await _owned(store, principal, conversation_id)
    rows = await store.append_items(conversation, [new_item(i) for i in body.items])
    return page_json([item_json(row) for row in rows], False)


@router.get("/{conversation_id}/items/{item_id}", response_model=None)
async def get_item(
    conversation_id: str, item_id: str, principal: PrincipalDep, store: ConversationsDep
) -> ConversationItem:
    conversation = await _owned(store, principal, conversation_id)
    row = await store.get_item(conversation, item_id)
    if row is None:
        raise APIError(404, f"Item '{item_id}' not found.", code="not_found")
    return item_json(row)


@router.delete("/{conversation_id}/items/{item_id}", response_model=None)
async def delete_item(
    conversation_id: str, item_id: str, principal: PrincipalDep, store: ConversationsDep
) -> Conversation:
    conversation = await _owned(store, principal, conversation_id)
    if not await store.delete_item(conversation, item_id):
        raise APIError(404, f"Item '{item_id}' not found.", code="not_found")
    return conversation_json(conversation)
