"""Persistence of responses, their input items, conversations and tool executions.

Every read is scoped to the caller: a response or conversation of another user is reported exactly
like one that does not exist. Writes per response: one transaction when it ends (response row, input
items, new conversation); a background response is inserted when it starts, so it can be polled,
and updated when it ends. Tool executions are inserted in that final transaction.

History replay: `previous_response_id` walks the chain of earlier responses (a recursive query) and
replays each one's input items then output items, oldest first; `conversation` replays every
finished response of that conversation in creation order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.db import transaction
from apps.common.errors import not_found
from apps.response_api.db import Conversation, ResponseInputItem, ResponseRow, ToolExecution
from apps.response_api.services.cancel_bus import CHANNEL

MAX_CHAIN = 1000
RUNNING = ("queued", "in_progress")

_CHAIN = text(
    """
    WITH RECURSIVE chain(id, previous_response_id, depth) AS (
        SELECT id, previous_response_id, 0 FROM responses WHERE id = :id AND user_id = :user_id
        UNION ALL
        SELECT r.id, r.previous_response_id, c.depth + 1
        FROM responses r JOIN chain c ON r.id = c.previous_response_id
        WHERE r.user_id = :user_id AND c.depth < :max_chain
    )
    SELECT r.id, r.conversation_id, r.body -> 'output' AS output,
           (SELECT coalesce(jsonb_agg(i.item ORDER BY i.position), '[]'::jsonb)
            FROM response_input_items i WHERE i.response_id = r.id) AS input
    FROM chain c JOIN responses r ON r.id = c.id
    ORDER BY c.depth DESC
    """
)

_CONVERSATION = text(
    """
    SELECT r.id, r.body -> 'output' AS output,
           (SELECT coalesce(jsonb_agg(i.item ORDER BY i.position), '[]'::jsonb)
            FROM response_input_items i WHERE i.response_id = r.id) AS input
    FROM responses r
    WHERE r.conversation_id = :conversation_id AND r.user_id = :user_id
      AND r.status NOT IN ('queued', 'in_progress')
    ORDER BY r.created_at, r.id
    """
)


class ResponseStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def previous_history(
        self, user_id: str, response_id: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Items of the chain ending at `response_id`, and that response's conversation."""
        async with self._sessions() as session:
            rows = (
                await session.execute(_CHAIN, {"id": response_id, "user_id": user_id, "max_chain": MAX_CHAIN})
            ).all()
        if not rows:
            raise not_found("Previous response", response_id)
        items = [item for row in rows for item in (*row.input, *(row.output or ()))]
        return items, rows[-1].conversation_id

    async def conversation_history(self, user_id: str, conversation_id: str) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            owner = await session.scalar(
                select(Conversation.user_id).where(Conversation.id == conversation_id)
            )
            if owner != user_id:
                raise not_found("Conversation", conversation_id)
            rows = (
                await session.execute(_CONVERSATION, {"conversation_id": conversation_id, "user_id": user_id})
            ).all()
        return [item for row in rows for item in (*row.input, *(row.output or ()))]

    async def insert(
        self,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        user_id: str,
        *,
        new_conversation: bool,
        executions: list[dict[str, Any]] | None = None,
    ) -> None:
        """Store a response (with its conversation, when it starts one) in one transaction."""
        conversation_id = (body.get("conversation") or {}).get("id")
        async with transaction(self._sessions) as session:
            if new_conversation:
                session.add(Conversation(id=conversation_id, user_id=user_id))
                await session.flush()
            session.add(
                ResponseRow(
                    id=body["id"],
                    user_id=user_id,
                    status=body["status"],
                    model=body["model"],
                    previous_response_id=body.get("previous_response_id"),
                    conversation_id=conversation_id,
                    body=body,
                )
            )
            await session.flush()
            await session.execute(
                insert(ResponseInputItem),
                [
                    {"response_id": body["id"], "position": i, "item": item}
                    for i, item in enumerate(input_items)
                ],
            )
            if executions:
                await session.execute(insert(ToolExecution), executions)

    async def save(self, body: dict[str, Any], executions: list[dict[str, Any]] | None = None) -> None:
        async with transaction(self._sessions) as session:
            await session.execute(
                update(ResponseRow)
                .where(ResponseRow.id == body["id"])
                .values(status=body["status"], body=body, updated_at=text("now()"))
            )
            if executions:
                await session.execute(insert(ToolExecution), executions)

    async def get(self, user_id: str, response_id: str) -> dict[str, Any]:
        async with self._sessions() as session:
            body = await session.scalar(
                select(ResponseRow.body).where(ResponseRow.id == response_id, ResponseRow.user_id == user_id)
            )
        if body is None:
            raise not_found("Response", response_id)
        return dict(body)

    async def mark_cancelled(self, user_id: str, response_id: str) -> dict[str, Any]:
        """Cancel a running response this process does not hold: mark it, and tell every replica."""
        body = await self.get(user_id, response_id)
        if body["status"] in RUNNING:
            body["status"] = "cancelled"
            async with transaction(self._sessions) as session:
                await session.execute(
                    update(ResponseRow)
                    .where(ResponseRow.id == response_id, ResponseRow.status.in_(RUNNING))
                    .values(status="cancelled", body=body, updated_at=text("now()"))
                )
                await session.execute(select(func.pg_notify(CHANNEL, response_id)))
        return body

    async def input_items(self, user_id: str, response_id: str) -> list[dict[str, Any]]:
        await self.get(user_id, response_id)
        async with self._sessions() as session:
            rows = await session.scalars(
                select(ResponseInputItem.item)
                .where(ResponseInputItem.response_id == response_id)
                .order_by(ResponseInputItem.position)
            )
            return list(rows)

    async def delete(self, user_id: str, response_id: str) -> None:
        async with transaction(self._sessions) as session:
            deleted = await session.scalar(
                delete(ResponseRow)
                .where(ResponseRow.id == response_id, ResponseRow.user_id == user_id)
                .returning(ResponseRow.id)
            )
            if deleted is None:
                raise not_found("Response", response_id)
            await session.execute(
                delete(ToolExecution).where(
                    ToolExecution.response_id == response_id, ToolExecution.user_id == user_id
                )
            )

    async def record_executions(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            async with transaction(self._sessions) as session:
                await session.execute(insert(ToolExecution), rows)
