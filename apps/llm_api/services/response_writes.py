"""What response-api writes to the conversations llm-api owns, through `/internal/conversations`
only: a response's items appended (or its new conversation made with them), withdrawn again when
the response could not be stored, and conversations imported from response-api's former store.

Deliveries can repeat and arrive late (response-api retries an append whose answer it lost, and
gives up on one still in flight), so appends carry an idempotency key and withdrawals are recorded
(`withdrawn_appends`): a late delivery of a withdrawn append stores nothing (`AppendWithdrawn`).
Every step takes the conversation's row lock, as every writer of its items does; a create and the
withdrawals of its id also take an advisory lock on the id (`_serialise_create`), since there may be
no row to lock yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.llm_api.chat_tables import ConversationRow, ItemRow, WithdrawnAppendRow
from apps.llm_api.services.conversations import NewItem, insert_items

# The key a withdrawn conversation is recorded under: no delivery, whatever its key (a response's
# early create is keyed by the conversation's own id), makes it again. Never an `Idempotency-Key`,
# which is at least one character long.
WHOLE_CONVERSATION = ""


class AppendWithdrawn(Exception):
    """The append's key was withdrawn (`withdraw_items`, `withdraw`): a late delivery stores nothing."""


class ConversationTaken(Exception):
    """The id names another user's conversation."""


class ResponseWrites:
    # How long a withdrawn append is refused. A delivery can only still arrive while response-api's
    # append is in flight (its retry budget, at most minutes, plus a 30 s read timeout); a day is far
    # past that, as idempotency keys' windows usually are, and keeps the records to a day's withdrawals
    # (each withdrawal removes the expired ones: withdrawals are rare, failure-path calls).
    WITHDRAWN_KEEP = timedelta(days=1)

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

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
            return await insert_items(session, locked, items, append_key=key)

    async def create_with_items(
        self, user_id: str, public_id: str, items: list[NewItem], *, title: str | None, key: str | None
    ) -> list[ItemRow] | None:
        """Make the caller's conversation `public_id` holding `items`, appended under `key`, in one
        transaction: their rows. None if the caller has it already (append to it instead);
        `ConversationTaken` if another user has it; `AppendWithdrawn` if the append `key` or the whole
        conversation was withdrawn.

        One transaction, not a create and then an append: between the two a withdrawal of the id
        found the new conversation empty and took it, the append that followed then finding it gone
        (a 404), although the withdrawal must keep a conversation holding another append's items."""
        async with self._sessions() as session, session.begin():
            await self._serialise_create(session, user_id, public_id)
            row = await self._insert_new(session, public_id=public_id, user_id=user_id, title=title)
            if row is None:
                if await self._owner(session, public_id) not in (user_id, None):
                    raise ConversationTaken(public_id)
                return None  # the caller's (or gone since: the append then finds it missing)
            # After the insert; a keyless create still heeds a withdrawal of the whole conversation,
            # which promises that no delivery makes it again.
            await self._refuse_withdrawn(session, user_id, public_id, key or WHOLE_CONVERSATION)
            return await insert_items(session, row, items, append_key=key) if items else []

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

    async def import_conversation(
        self,
        public_id: str,
        user_id: str,
        created_at: datetime,
        items: list[NewItem],
    ) -> bool | None:
        """Create a conversation with its id, owner, age and items; False if this user already has
        it (a repeated import), None if the id belongs to someone else."""
        async with self._sessions() as session, session.begin():
            row = await self._insert_new(session, public_id=public_id, user_id=user_id, created_at=created_at)
            if row is None:
                return False if await self._owner(session, public_id) == user_id else None
            if items:
                await insert_items(session, row, items)
        return True

    @staticmethod
    async def _insert_new(session: AsyncSession, **values: Any) -> ConversationRow | None:
        """Insert a conversation, or nothing (None) if its public id is taken: by a committed one, or
        by one whose insert commits while this waits on the id's unique index. Two users' creates of
        one id are ordered by that index only (the id lock is per user), and the later one then sees
        the earlier's owner rather than failing on the index."""
        inserted: ConversationRow | None = await session.scalar(
            insert(ConversationRow)
            .values(metadata_={}, **values)
            .on_conflict_do_nothing(index_elements=[ConversationRow.public_id])
            .returning(ConversationRow)
        )
        return inserted

    @staticmethod
    async def _owner(session: AsyncSession, public_id: str) -> str | None:
        owner: str | None = await session.scalar(
            select(ConversationRow.user_id).where(ConversationRow.public_id == public_id)
        )
        return owner

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
