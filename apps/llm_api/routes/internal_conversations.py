"""`/internal/conversations`: how response-api reads and extends the conversations llm-api owns.

llm-api owns every conversation, whichever API writes to it (DESIGN.md, Data). response-api reaches
these routes over HTTP with the internal token (as for the API-key check) *and* the caller's own
credentials, so ownership is decided here, exactly as on the public routes: another user's
conversation is a 404.

- `GET …/{id}/items`: the items a response continues from, oldest first, all statuses, in one call
  (the most recent `REPLAY_MAX_ITEMS`), and `project_instructions`: the instructions of the
  conversation's project (null without one), which response-api puts before the response's own.
- `GET …/{id}`: the conversation with its `project_instructions` alone (a response continuing a
  previous one reads its history from response-api's store, but its project from here).
- `POST …/{id}/items`: one response's input and output items, appended in one transaction with their
  ids kept. A conversation without a title gets one from the first user message, as chat turns do.
  An `Idempotency-Key` (response-api sends the response id) makes a repeated append store nothing:
  response-api retries an append whose answer it did not get, so the turn is stored exactly once.
  An append whose key was withdrawn (below) is refused (409 `append_withdrawn`): a delivery still in
  flight when response-api gave up on it must not put back what it took out.
  With `?create=true` a conversation the caller does not have yet is created with the items, in one
  transaction, under the id in the path (response-api names a response's new conversation itself,
  so a response costs one call here instead of a create at its start and an append at its end); the
  items may then be empty (a response that failed still leaves its conversation). An id another
  user holds is a 409.
- `DELETE …/{id}?key=<response id>`: withdraw a new conversation response-api made for a response
  it then could not store (its client got an error and never learned the id): it goes only if it
  holds nothing but that response's append (items under that `Idempotency-Key`) or nothing at all;
  anything else in it keeps it (409). A missing one (or another user's) is already withdrawn (204),
  so a retry after a lost answer is harmless. The check and the delete are one step under the
  conversation's row lock (`ResponseWrites.withdraw`): an item appended meanwhile keeps it.
- `DELETE …/{id}/items?key=<response id>`: withdraw one response's items from a conversation that
  stays (a response appended to a conversation the caller named, then could not be stored: its
  client was told it failed, and a chat turn that could not be stored stays out too). Only items
  appended under that `Idempotency-Key` go; always 204 (nothing to withdraw, a missing conversation
  or another user's alike), so a retry is harmless.
  Both withdrawals are recorded (`withdrawn_appends`, kept a day: `ResponseWrites.WITHDRAWN_KEEP`):
  the key, or a withdrawn conversation as a whole. A keyed append checks under the same row lock, and
  a create after inserting the conversation, so neither puts back what was withdrawn; a create and
  the withdrawals of its id also take turns (`_serialise_create`), since a withdrawal that finds no
  conversation yet has no row to lock. A create without a key takes turns too, and is refused by a
  withdrawn conversation; and a withdrawal never comes between a create and its items.
- `POST …/import`: a conversation from response-api's former own store, with its id, owner and age
  (see response-api's migration 0003). Repeating an import is harmless.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response

from apps.common.auth.principal import PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.auth.routes.internal import require_internal_token
from apps.llm_api.chat_tables import ConversationRow, ItemRow
from apps.llm_api.deps import ConversationsDep, ResponseWritesDep
from apps.llm_api.services.conversations import ConversationStore, NewItem
from apps.llm_api.services.items import items_to_messages, title_from
from apps.llm_api.services.response_writes import AppendWithdrawn, ConversationTaken, ResponseWrites
from apps.llm_api.types import ConversationContext, ConversationImported, ConversationItem, ItemReplay, Page
from apps.llm_api.wire.conversations import conversation_json, item_json, page_json
from apps.llm_api.wire.response_items import (
    AppendItems,
    ImportConversation,
    stored_item,
)

REPLAY_MAX_ITEMS = 1000
# The shape of the ids llm-api gives conversations (`random_id("conv")`), required of one named by a caller.
NEW_CONVERSATION_ID = re.compile(r"conv_[0-9A-Za-z]{16,64}")

router = APIRouter(
    route_class=GuardedRoute,
    prefix="/internal/conversations",
    include_in_schema=False,
    dependencies=[Depends(require_internal_token)],
)


def _missing(conversation_id: str) -> APIError:
    return APIError(
        404, f"Conversation '{conversation_id}' not found.", param="conversation", code="not_found"
    )


async def _context(
    store: ConversationStore, user_id: str, conversation_id: str
) -> tuple[ConversationRow, str | None]:
    """The caller's conversation and its project's instructions, or a 404."""
    found = await store.get_with_instructions(user_id, conversation_id)
    if found is None:
        raise _missing(conversation_id)
    return found


@router.get("/{conversation_id}", response_model=None)
async def conversation_context(
    conversation_id: str, principal: PrincipalDep, store: ConversationsDep
) -> ConversationContext:
    conversation, instructions = await _context(store, principal.user_id, conversation_id)
    return {**conversation_json(conversation), "project_instructions": instructions}


@router.get("/{conversation_id}/items", response_model=None)
async def replay_items(conversation_id: str, principal: PrincipalDep, store: ConversationsDep) -> ItemReplay:
    conversation, instructions = await _context(store, principal.user_id, conversation_id)
    rows = await store.replay_items(conversation, REPLAY_MAX_ITEMS)
    return {**page_json([item_json(row) for row in rows], False), "project_instructions": instructions}


@router.post("/{conversation_id}/items", response_model=None)
async def append_items(
    conversation_id: str,
    body: AppendItems,
    principal: PrincipalDep,
    store: ConversationsDep,
    writes: ResponseWritesDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=64)] = None,
    create: bool = False,
) -> Page[ConversationItem]:
    items = [stored_item(item) for item in body.items]
    try:
        if create:  # usually the first delivery: the conversation is made with its items
            rows = await _create(writes, principal.user_id, conversation_id, idempotency_key, items)
            if rows is not None:
                return page_json([item_json(row) for row in rows], False)
        conversation = await store.get(principal.user_id, conversation_id)
        if conversation is None:  # never made, or deleted since (even right after a create found it)
            raise _missing(conversation_id)
        if not items:
            if not create:
                raise APIError(400, "'items' must not be empty.", param="items", code="invalid_value")
            return page_json([], False)
        title = None if conversation.title else _title([item.body for item in items])
        rows = await writes.append_response(conversation, items, title=title, key=idempotency_key)
    except ConversationTaken:
        raise _taken(conversation_id) from None
    except AppendWithdrawn:
        what = f"The append '{idempotency_key}'" if idempotency_key else f"Conversation '{conversation_id}'"
        raise APIError(409, f"{what} was withdrawn; it stores nothing.", code="append_withdrawn") from None
    if rows is None:  # deleted between the lookup and the write
        raise _missing(conversation_id)
    return page_json([item_json(row) for row in rows], False)


@router.delete("/{conversation_id}", status_code=204, response_model=None)
async def withdraw_conversation(
    conversation_id: str,
    principal: PrincipalDep,
    writes: ResponseWritesDep,
    key: Annotated[str, Query(min_length=1, max_length=64)],
) -> Response:
    if await writes.withdraw(principal.user_id, conversation_id, key) is False:
        raise APIError(
            409, f"Conversation '{conversation_id}' holds more than that response.", code="conflict"
        )
    return Response(status_code=204)


@router.delete("/{conversation_id}/items", status_code=204, response_model=None)
async def withdraw_items(
    conversation_id: str,
    principal: PrincipalDep,
    writes: ResponseWritesDep,
    key: Annotated[str, Query(min_length=1, max_length=64)],
) -> Response:
    await writes.withdraw_items(principal.user_id, conversation_id, key)
    return Response(status_code=204)


@router.post("/import", response_model=None)
async def import_conversation(body: ImportConversation, writes: ResponseWritesDep) -> ConversationImported:
    items = [stored_item(entry.item, entry.created_at) for entry in body.items]
    created = await writes.import_conversation(body.id, body.user_id, body.created_at, items)
    if created is None:
        raise _taken(body.id)
    return {"id": body.id, "object": "conversation.import", "created": created}


async def _create(
    writes: ResponseWrites, user_id: str, conversation_id: str, key: str | None, items: list[NewItem]
) -> list[ItemRow] | None:
    """Make the caller's conversation `conversation_id` with `items` (`writes.create_with_items`):
    their rows, or None when the caller has it already."""
    if not NEW_CONVERSATION_ID.fullmatch(conversation_id):
        raise APIError(400, f"'{conversation_id}' is not a conversation id.", param="conversation_id")
    title = _title([item.body for item in items])
    return await writes.create_with_items(user_id, conversation_id, items, title=title, key=key)


def _taken(conversation_id: str) -> APIError:
    return APIError(409, f"Conversation '{conversation_id}' belongs to another user.", code="conflict")


def _title(items: list[dict[str, Any]]) -> str | None:
    messages = items_to_messages(items)
    if not any(m.get("role") == "user" for m in messages):
        return None
    return title_from(messages)
