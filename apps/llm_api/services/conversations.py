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
earlier item as input) is replaced by a fresh one rather than failing the write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.common.db import HeldConnections
from apps.common.ids import random_id
from apps.llm_api.chat_tables import ConversationRow, ItemRow, WithdrawnAppendRow
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


# The key a withdrawn conversation is recorded under: no delivery, whatever its key (a response's
# early create is keyed by the conversation's own id), makes it again. Never an `Idempotency-Key`,
# which is at least one character long.
WHOLE_CONVERSATION = ""


class AppendWithdrawn(Exception):
    """The append's key was withdrawn (`withdraw_items`, `withdraw`): a late delivery stores nothing."""


class ConversationStore:
    # How long a withdrawn append is refused. A delivery can only still arrive while response-api's
    # append is in flight (its retry budget, at most minutes, plus a 30 s read timeout); a day is far
    # past that, as idempotency keys' windows usually are, and keeps the records to a day's withdrawals
    # (each withdrawal removes the expired ones: withdrawals are rare, failure-path calls).
    WITHDRAWN_KEEP = timedelta(days=1)

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
                await self._insert_items(session, row, items)
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

    async def withdraw(self, user_id: str, public_id: str, key: str) -> bool | None:
        """Delete the caller's conversation if it holds nothing but items appended under `key`: True
        if deleted, False if it holds anything else (it stays), None if it is not theirs or gone.
        Deleted or not there (yet), it is recorded as withdrawn: no late delivery makes it again.

        The check and the delete run under the conversation's row lock. Every writer of its items
        holds a lock on that row that conflicts with it (the writers' own row lock, or the item's
        foreign key), so an item appended meanwhile is either committed and seen by the check, or
        waits until the conversation is gone and then fails.
        """
        async with self._sessions() as session, session.begin():
            await self._serialise_create(session, user_id, public_id)
            locked = await self._locked_id(session, user_id, public_id)
            if locked is None:
                # Maybe its first delivery has not arrived yet: it must not make it afterwards.
                await self._record_withdrawal(session, user_id, public_id, WHOLE_CONVERSATION)
                return None
            other = await session.scalar(
                select(ItemRow.id)
                .where(ItemRow.conversation_id == locked, ItemRow.append_key.is_distinct_from(key))
                .limit(1)
            )
            if other is not None:
                return False
            await session.execute(delete(ConversationRow).where(ConversationRow.id == locked))
            await self._record_withdrawal(session, user_id, public_id, WHOLE_CONVERSATION)
        return True

    async def withdraw_items(self, user_id: str, public_id: str, key: str) -> int:
        """Delete the items appended under `key` from the caller's conversation (a response that was
        then not stored); how many went (0 if none, or if the conversation is not theirs).

        Taken under the conversation's row lock, as appends are: an append of that key still being
        written finishes first, and is withdrawn with the rest; one arriving later finds the key
        withdrawn (`AppendWithdrawn`), checked under the same lock.
        """
        async with self._sessions() as session, session.begin():
            await self._serialise_create(session, user_id, public_id)
            locked = await self._locked_id(session, user_id, public_id)
            await self._record_withdrawal(session, user_id, public_id, key)
            if locked is None:
                return 0
            result = await session.execute(
                delete(ItemRow).where(ItemRow.conversation_id == locked, ItemRow.append_key == key)
            )
            gone = int(result.rowcount)  # type: ignore[attr-defined]
            if gone:
                await session.execute(
                    update(ConversationRow).where(ConversationRow.id == locked).values(updated_at=func.now())
                )
        return gone

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
            return await self._insert_items(session, locked, items)

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

    async def append_response(
        self,
        conversation: ConversationRow,
        items: list[NewItem],
        *,
        title: str | None,
        key: str | None = None,
    ) -> list[ItemRow] | None:
        """Append one response's items in one transaction; None if the conversation is gone.

        With an idempotency `key`, an append whose key the conversation already holds (a retry after
        a lost answer) stores nothing and returns the items stored the first time, and one whose key
        was withdrawn raises `AppendWithdrawn`. The checks run under the conversation's row lock,
        which every writer of its items and both withdrawals take, so two deliveries of one append
        cannot both pass them, nor one pass after its withdrawal.
        """
        async with self._sessions() as session, session.begin():
            locked = await session.get(ConversationRow, conversation.id, with_for_update=True)
            if locked is None:
                return None
            if key is not None:
                await self._refuse_withdrawn(session, locked.user_id, locked.public_id, key)
                stored = await session.scalars(
                    select(ItemRow)
                    .where(ItemRow.conversation_id == locked.id, ItemRow.append_key == key)
                    .order_by(ItemRow.sequence)
                )
                earlier = list(stored.all())
                if earlier:
                    return earlier
            if title and not locked.title:
                locked.title = title
            return await self._insert_items(session, locked, items, append_key=key)

    async def create_with_items(
        self, user_id: str, public_id: str, items: list[NewItem], *, title: str | None, key: str | None
    ) -> list[ItemRow] | None:
        """Make the caller's conversation `public_id` holding `items`, appended under `key`, in one
        transaction: their rows. None if the id is taken (the caller's: append to it; or another
        user's). `AppendWithdrawn` if the append `key` or the whole conversation was withdrawn.

        One transaction, not a create and then an append: between the two a withdrawal of the id
        found the new conversation empty and took it, the append that followed then finding it gone
        (a 404), although the withdrawal must keep a conversation holding another append's items."""
        async with self._sessions() as session, session.begin():
            await self._serialise_create(session, user_id, public_id)
            taken = await session.scalar(
                select(ConversationRow.id).where(ConversationRow.public_id == public_id)
            )
            if taken is not None:
                return None
            row = ConversationRow(public_id=public_id, user_id=user_id, title=title, metadata_={})
            session.add(row)
            await session.flush()
            # After the insert, as in `import_conversation`; a keyless create still heeds a withdrawal
            # of the whole conversation, which promises that no delivery makes it again.
            await self._refuse_withdrawn(session, user_id, public_id, key or WHOLE_CONVERSATION)
            return await self._insert_items(session, row, items, append_key=key) if items else []

    async def import_conversation(
        self,
        public_id: str,
        user_id: str,
        created_at: datetime,
        items: list[NewItem],
        *,
        key: str | None = None,
    ) -> bool | None:
        """Create a conversation with its id, owner, age and items; False if this user already has
        it (a repeated import), None if the id belongs to someone else. With the `key` of the append
        it is made for, `AppendWithdrawn` if that append was withdrawn (it is not made)."""
        async with self._sessions() as session, session.begin():
            if key is not None:
                await self._serialise_create(session, user_id, public_id)
            existing = await session.scalar(
                select(ConversationRow.user_id).where(ConversationRow.public_id == public_id)
            )
            if existing is not None:
                return False if existing == user_id else None
            row = ConversationRow(public_id=public_id, user_id=user_id, metadata_={}, created_at=created_at)
            session.add(row)
            await session.flush()
            if key is not None:  # after the insert: a withdrawal committed meanwhile is seen
                await self._refuse_withdrawn(session, user_id, public_id, key)
            if items:
                await self._insert_items(session, row, items)
        return True

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
    async def _serialise_create(session: AsyncSession, user_id: str, public_id: str) -> None:
        """Hold the caller's conversation id until commit, for a response's create and withdrawals
        only. A withdrawal that finds no conversation has no row to lock, and a create's uncommitted
        one is invisible to it: without this, a create checking the withdrawal records before that
        withdrawal commits would make a conversation that stays (a hash collision only serialises
        two such rare calls more)."""
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(user_id + "/" + public_id))))

    @staticmethod
    async def _locked_id(session: AsyncSession, user_id: str, public_id: str) -> int | None:
        """The id of the caller's conversation, its row locked until commit (None if not theirs)."""
        locked: int | None = await session.scalar(
            select(ConversationRow.id)
            .where(ConversationRow.user_id == user_id, ConversationRow.public_id == public_id)
            .with_for_update()
        )
        return locked

    @classmethod
    async def _record_withdrawal(cls, session: AsyncSession, user_id: str, public_id: str, key: str) -> None:
        """Refuse later deliveries of the append `key` (and forget withdrawals past `WITHDRAWN_KEEP`)."""
        await session.execute(
            delete(WithdrawnAppendRow).where(
                WithdrawnAppendRow.withdrawn_at < func.now() - cls.WITHDRAWN_KEEP
            )
        )
        await session.execute(
            insert(WithdrawnAppendRow)
            .values(user_id=user_id, conversation_id=public_id, append_key=key)
            .on_conflict_do_update(
                index_elements=["user_id", "conversation_id", "append_key"], set_={"withdrawn_at": func.now()}
            )
        )

    @staticmethod
    async def _refuse_withdrawn(session: AsyncSession, user_id: str, public_id: str, key: str) -> None:
        withdrawn = await session.scalar(
            select(
                exists().where(
                    WithdrawnAppendRow.user_id == user_id,
                    WithdrawnAppendRow.conversation_id == public_id,
                    WithdrawnAppendRow.append_key.in_((key, WHOLE_CONVERSATION)),
                )
            )
        )
        if withdrawn:
            raise AppendWithdrawn(key)

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

    @staticmethod
    async def _insert_items(
        session: AsyncSession,
        conversation: ConversationRow,
        items: list[NewItem],
        append_key: str | None = None,
    ) -> list[ItemRow]:
        last = await session.scalar(
            select(func.coalesce(func.max(ItemRow.sequence), 0)).where(
                ItemRow.conversation_id == conversation.id
            )
        )
        taken = await taken_ids(session, items)
        rows = [
            ItemRow(**values) for values in item_values(items, conversation.id, last or 0, taken, append_key)
        ]
        session.add_all(rows)
        conversation.updated_at = datetime.now(UTC)
        await session.flush()
        return rows
