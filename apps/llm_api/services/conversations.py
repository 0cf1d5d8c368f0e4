"""Conversations and their items in Postgres, always scoped to one user.

Every lookup takes the caller's user id, so another user's conversation is indistinguishable from a
missing one (the routes answer 404 for both). Items are numbered per conversation (`sequence`); a
writer takes a row lock on the conversation before numbering, so concurrent turns never collide.
Cursors are public ids: `after=<id>` continues after that object in the requested order.

A conversation may belong to one of its owner's projects (`project_id`); attaching takes a key-share
lock on the project row, so a project deleted at the same moment either detaches the conversation
after it (the foreign key's `SET NULL`) or is already gone and the attach is refused (404). A turn
reads its conversation, its recent history and its project's instructions in one query
(`conversation_with_history`).

Items that come with an id (a response's items, appended by response-api) keep it, so a response's
output item and the conversation item are one object; an id already taken (a client replaying an
earlier item as input) is replaced by a fresh one rather than failing the write. What only
response-api writes (its appends, withdrawals and imports) is `response_writes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import EllipsisType
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.common.db import HeldConnections
from apps.common.ids import random_id
from apps.llm_api.chat_tables import ConversationRow, ItemRow
from apps.llm_api.services import turn_store
from apps.llm_api.services.items import ItemBody
from apps.llm_api.services.paging import Order, Page, keyset_page
from apps.llm_api.services.projects import find_project, project_missing
from apps.llm_api.services.turn_store import TurnConversation, TurnRecord, item_values, taken_ids


@dataclass
class NewItem:
    body: ItemBody
    status: str = "completed"
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    public_id: str = field(default_factory=lambda: random_id("msg"))
    created_at: datetime | None = None  # only when importing; otherwise the database's now()
    keep_id: bool = False


class ConversationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, held_connections: int = 0) -> None:
        """`held_connections`: how many connections the turn path (history reads, turn writes) keeps
        between statements (`HeldConnections`); `release_connections` gives them back."""
        self._sessions = sessions
        self._held = HeldConnections(self._engine, held_connections) if held_connections else None

    async def create(
        self,
        user_id: str,
        *,
        title: str | None = None,
        metadata: dict[str, str] | None = None,
        items: list[NewItem] | None = None,
        project_id: str | None = None,
    ) -> ConversationRow:
        async with self._sessions() as session, session.begin():
            if project_id is not None:
                await self._attachable(session, user_id, project_id)
            row = ConversationRow(
                public_id=random_id("conv"),
                user_id=user_id,
                title=title,
                metadata_=metadata or {},
                project_id=project_id,
            )
            session.add(row)
            await session.flush()
            if items:
                await insert_items(session, row, items)
        return row

    async def get(self, user_id: str, public_id: str) -> ConversationRow | None:
        async with self._sessions() as session:
            return await self._owned(session, user_id, public_id)

    async def get_with_instructions(
        self, user_id: str, public_id: str
    ) -> tuple[ConversationRow, str | None] | None:
        """The caller's conversation and its project's instructions (None without a project)."""
        found = await self.conversation_with_history(user_id, public_id, 0)
        return None if found is None else (found[0].as_row(), found[2])

    async def project_instructions(self, user_id: str, project_id: str) -> str | None:
        """The instructions of the caller's project; a 404 (`param: conversation`) if it is not theirs."""
        async with self._sessions() as session:
            project = await find_project(session, user_id, project_id)
        if project is None:
            raise project_missing(project_id, "conversation")
        return project.instructions

    async def list_conversations(
        self, user_id: str, *, limit: int, after: str | None, order: Order, project_id: str | None = None
    ) -> Page[ConversationRow]:
        async with self._sessions() as session:
            query = select(ConversationRow).where(ConversationRow.user_id == user_id)
            if project_id is not None:
                query = query.where(ConversationRow.project_id == project_id)
            key: int | None = None
            if after is not None:
                anchor = await self._owned(session, user_id, after)
                if anchor is None:
                    return Page([], False)
                key = anchor.id
            return await keyset_page(session, query, ConversationRow.id, key, limit=limit, order=order)

    async def update(
        self,
        user_id: str,
        public_id: str,
        *,
        title: str | None,
        metadata: dict[str, str] | None,
        project_id: str | EllipsisType | None = ...,
    ) -> ConversationRow | None:
        """Change what is given; `project_id` moves the conversation (None detaches, `...` keeps)."""
        async with self._sessions() as session, session.begin():
            row = await self._owned(session, user_id, public_id)
            if row is None:
                return None
            if not isinstance(project_id, EllipsisType):
                if project_id is not None:
                    await self._attachable(session, user_id, project_id)
                row.project_id = project_id
            if title is not None:
                row.title = title
            if metadata is not None:
                row.metadata_ = metadata
            row.updated_at = datetime.now(UTC)
        return row

    async def delete(self, user_id: str, public_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(ConversationRow).where(
                    ConversationRow.user_id == user_id, ConversationRow.public_id == public_id
                )
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def list_items(
        self, conversation: ConversationRow, *, limit: int, after: str | None, order: Order
    ) -> Page[ItemRow] | None:
        async with self._sessions() as session:
            query = select(ItemRow).where(ItemRow.conversation_id == conversation.id)
            key: int | None = None
            if after is not None:
                anchor = await self._item(session, conversation, after)
                if anchor is None:
                    return None
                key = anchor.sequence
            return await keyset_page(session, query, ItemRow.sequence, key, limit=limit, order=order)

    async def append_items(self, conversation: ConversationRow, items: list[NewItem]) -> list[ItemRow]:
        async with self._sessions() as session, session.begin():
            locked = await session.get(ConversationRow, conversation.id, with_for_update=True)
            if locked is None:
                return []
            return await insert_items(session, locked, items)

    async def conversation_with_history(
        self, user_id: str, public_id: str, limit: int
    ) -> tuple[TurnConversation, list[ItemBody], str | None] | None:
        """The caller's conversation, its recent history and its project's instructions (None without
        a project), in one round trip (`turn_store.py`)."""
        return await turn_store.conversation_with_history(
            self._engine, user_id, public_id, limit, held=self._held
        )

    async def record_turns(self, turns: list[TurnRecord]) -> None:
        """Several turns in one transaction (group commit, `turn_store.py`)."""
        await turn_store.write_turns(self._engine, turns, held=self._held)

    def release_connections(self) -> None:
        """The turn path's held connections back to the pool (after the writers stopped)."""
        if self._held is not None:
            self._held.release()

    @property
    def _engine(self) -> AsyncEngine:
        engine: AsyncEngine = self._sessions.kw["bind"]
        return engine

    async def replay_items(self, conversation: ConversationRow, limit: int) -> list[ItemRow]:
        """The last `limit` items of any status, oldest first (what a response continues from)."""
        async with self._sessions() as session:
            query = (
                select(ItemRow)
                .where(ItemRow.conversation_id == conversation.id)
                .order_by(ItemRow.sequence.desc())
                .limit(limit)
            )
            rows = list((await session.scalars(query)).all())
        rows.reverse()
        return rows

    async def has_any_item(self, public_ids: list[str]) -> bool:
        """Whether any of these items is stored (a retried write asks this: did the lost commit land?)."""
        async with self._sessions() as session:
            found = await session.scalar(select(ItemRow.id).where(ItemRow.public_id.in_(public_ids)).limit(1))
        return found is not None

    async def get_item(self, conversation: ConversationRow, item_id: str) -> ItemRow | None:
        async with self._sessions() as session:
            return await self._item(session, conversation, item_id)

    async def delete_item(self, conversation: ConversationRow, item_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(ItemRow).where(
                    ItemRow.conversation_id == conversation.id, ItemRow.public_id == item_id
                )
            )
            if result.rowcount:  # type: ignore[attr-defined]
                await session.execute(
                    update(ConversationRow)
                    .where(ConversationRow.id == conversation.id)
                    .values(updated_at=func.now())
                )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def _owned(session: AsyncSession, user_id: str, public_id: str) -> ConversationRow | None:
        query = select(ConversationRow).where(
            ConversationRow.public_id == public_id, ConversationRow.user_id == user_id
        )
        return (await session.scalars(query)).first()

    @staticmethod
    async def _attachable(session: AsyncSession, user_id: str, project_id: str) -> None:
        """The caller's project exists and stays until commit (key-share lock), or a 404."""
        if await find_project(session, user_id, project_id, lock=True) is None:
            raise project_missing(project_id, "project_id")

    @staticmethod
    async def _item(session: AsyncSession, conversation: ConversationRow, item_id: str) -> ItemRow | None:
        query = select(ItemRow).where(
            ItemRow.conversation_id == conversation.id, ItemRow.public_id == item_id
        )
        return (await session.scalars(query)).first()


async def insert_items(
    session: AsyncSession,
    conversation: ConversationRow,
    items: list[NewItem],
    append_key: str | None = None,
) -> list[ItemRow]:
    """Number `items` after the conversation's last and add them (`append_key`: the append they
    came in, `response_writes.py`). The caller holds the conversation's row lock."""
    last = await session.scalar(
        select(func.coalesce(func.max(ItemRow.sequence), 0)).where(ItemRow.conversation_id == conversation.id)
    )
    taken = await taken_ids(session, items)
    rows = [ItemRow(**values) for values in item_values(items, conversation.id, last or 0, taken, append_key)]
    session.add_all(rows)
    conversation.updated_at = datetime.now(UTC)
    await session.flush()
    return rows
