"""The one-shot copy of response-api's former conversations to llm-api (step 2 of migration 0003).

Each replica runs `copy_legacy_conversations` in the background from start-up until
`legacy_conversations` is empty; on a database or llm-api outage it waits and tries again. One
conversation per transaction: its row is claimed `FOR UPDATE SKIP LOCKED` (replicas share the work),
sent to llm-api's idempotent import, and deleted only after llm-api has answered, so a crash at any
point repeats a copy rather than losing one.

The items are what `conversation` used to replay: the input then output items of each of its
responses that had finished (any end status), oldest response first, each dated by its response.
A conversation llm-api refuses (a 4xx: malformed legacy items, or an id it already holds for another
user) is logged and left in the table for an operator; the copy goes on with the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.errors import APIError
from apps.response_api.services.conversations import Conversations

log = logging.getLogger(__name__)

_CLAIM = text(
    """
    SELECT id, user_id, created_at FROM legacy_conversations
    WHERE NOT (id = ANY(CAST(:skipped AS text[])))
    ORDER BY created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
)

_ITEMS = text(
    """
    SELECT r.created_at, r.body -> 'output' AS output,
           (SELECT coalesce(jsonb_agg(i.item ORDER BY i.position), '[]'::jsonb)
            FROM response_input_items i WHERE i.response_id = r.id) AS input
    FROM responses r
    WHERE r.conversation_id = :id AND r.status NOT IN ('queued', 'in_progress')
    ORDER BY r.created_at, r.id
    """
)

_DELETE = text("DELETE FROM legacy_conversations WHERE id = :id")


async def copy_legacy_conversations(
    engine: AsyncEngine, conversations: Conversations, *, retry_seconds: float = 15.0
) -> int:
    """Copy every legacy conversation to llm-api; returns how many this replica copied."""
    copied = 0
    skipped: list[str] = []
    while True:
        try:
            outcome = await _copy_one(engine, conversations, skipped)
        except Exception as exc:  # llm-api or the database is away: the copy waits, serving goes on
            log.warning("copying legacy conversations paused", extra={"error": repr(exc)})
            await asyncio.sleep(retry_seconds)
            continue
        if outcome is None:
            if copied:
                log.info("legacy conversations copied", extra={"count": copied, "left": len(skipped)})
            return copied
        copied += outcome


async def _copy_one(engine: AsyncEngine, conversations: Conversations, skipped: list[str]) -> int | None:
    """1 when a conversation was copied, 0 when one was refused, None when none is left."""
    async with engine.begin() as connection:
        row = (await connection.execute(_CLAIM, {"skipped": skipped})).first()
        if row is None:
            return None
        responses = (await connection.execute(_ITEMS, {"id": row.id})).all()
        payload: dict[str, Any] = {
            "id": row.id,
            "user_id": row.user_id,
            "created_at": row.created_at.isoformat(),
            "items": [
                {"created_at": r.created_at.isoformat(), "item": item}
                for r in responses
                for item in (*r.input, *(r.output or ()))
            ],
        }
        try:
            await conversations.import_legacy(payload)
        except APIError as exc:
            if exc.status_code >= 500:
                raise
            log.error(
                "llm-api refused a legacy conversation; left in legacy_conversations",
                extra={"conversation": row.id, "error": exc.message},
            )
            skipped.append(row.id)
            return 0
        await connection.execute(_DELETE, {"id": row.id})
    return 1
