"""The hot path's SQL: a conversation with its history in one query, many turns in one transaction.

A conversation turn used to cost two sessions to read (the conversation, then its items) and an ORM
unit of work to write (insert the conversation, flush, read the last sequence, insert the items,
flush, update the conversation, commit): about a third of the process's CPU under load went to
SQLAlchemy's ORM and a connection checkout (with its pre-ping) per step (`bench/load.py --profile`).
Here the read is one statement on one connection, and the write is a handful of Core statements whose
number does not depend on how many turns go in: `TurnWriter` gathers the turns that finish while the
previous batch is being committed and writes them together (group commit), each still acknowledged
only once its transaction has committed.

Ordering and locking are those of `ConversationStore.append_items`: the conversations a batch appends
to are locked (in id order, so two writers cannot deadlock) before their last sequence is read, so a
concurrent writer (a response's items, another process's batch) never takes the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from apps.common.ids import random_id
from apps.llm_api.chat_tables import ConversationRow, ItemRow, ProjectRow
from apps.llm_api.services.items import ItemBody

if TYPE_CHECKING:  # conversations.py delegates here, so only the type is taken from it
    from apps.llm_api.services.conversations import NewItem

_conversations = cast(Table, ConversationRow.__table__)
_items = cast(Table, ItemRow.__table__)
_projects = cast(Table, ProjectRow.__table__)
# Attribute name of each conversation column (`metadata_` is stored as `metadata`), so a row read with
# Core becomes the same detached `ConversationRow` the ORM would give, whatever columns it gains.
_CONVERSATION_ATTRIBUTES = {
    column.key: attribute.key
    for attribute in ConversationRow.__mapper__.column_attrs
    for column in attribute.columns
}


@dataclass
class TurnRecord:
    """One turn's write: the items to append to `conversation` (inserted first when `new`)."""

    conversation: ConversationRow
    items: list[NewItem]
    title: str | None

    @property
    def new(self) -> bool:
        """A conversation drafted for this turn (`conversation: {}`): it has no row, hence no id, yet."""
        return self.conversation.id is None


async def conversation_with_history(
    engine: AsyncEngine, user_id: str, public_id: str, limit: int
) -> tuple[ConversationRow, list[ItemBody], str | None] | None:
    """The caller's conversation, its last `limit` completed items (oldest first) and its project's
    instructions (None without a project); one round trip."""
    recent = (
        select(_items.c.type, _items.c.role, _items.c.body, _items.c.sequence)
        .where(_items.c.conversation_id == _conversations.c.id, _items.c.status == "completed")
        .order_by(_items.c.sequence.desc())
        .limit(max(limit, 0))
        .lateral("recent")
    )
    project = (_projects.c.public_id == _conversations.c.project_id) & (
        _projects.c.user_id == _conversations.c.user_id
    )
    query = (
        select(
            _conversations,
            _projects.c.instructions,
            recent.c.type,
            recent.c.role,
            recent.c.body,
            recent.c.sequence,
        )
        .select_from(_conversations.outerjoin(_projects, project).outerjoin(recent, true()))
        .where(_conversations.c.public_id == public_id, _conversations.c.user_id == user_id)
        .order_by(recent.c.sequence)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    if not rows:
        return None
    first = rows[0]._mapping
    conversation = ConversationRow(
        **{
            attribute: first[_conversations.c[column]]
            for column, attribute in _CONVERSATION_ATTRIBUTES.items()
        }
    )
    history: list[ItemBody] = []
    for row in rows:
        mapping = row._mapping
        if mapping[recent.c.type] is None:
            continue  # the outer join's row of a conversation without items
        body: ItemBody = {"type": mapping[recent.c.type], **mapping[recent.c.body]}
        if mapping[recent.c.role] is not None:
            body["role"] = mapping[recent.c.role]
        history.append(body)
    return conversation, history, first[_projects.c.instructions]


async def write_turns(engine: AsyncEngine, turns: list[TurnRecord]) -> None:
    """All `turns` in one transaction; a turn whose conversation was deleted meanwhile is skipped."""
    async with engine.begin() as connection:
        ids = await _insert_new(connection, [t for t in turns if t.new])
        appended = sorted({t.conversation.id for t in turns if not t.new})
        if appended:
            locked = await connection.scalars(
                select(_conversations.c.id)
                .where(_conversations.c.id.in_(appended))
                .order_by(_conversations.c.id)
                .with_for_update()
            )
            present = set(locked)
            numbered = await connection.execute(
                select(_items.c.conversation_id, func.max(_items.c.sequence))
                .where(_items.c.conversation_id.in_(present))
                .group_by(_items.c.conversation_id)
            )
            last: dict[int, int] = dict(numbered.tuples().all())
            titles: dict[int, str | None] = {}
            for turn in turns:
                if not turn.new and turn.conversation.id in present:
                    ids[id(turn)] = turn.conversation.id
                    titles[turn.conversation.id] = titles.get(turn.conversation.id) or turn.title
            await connection.execute(
                update(_conversations)
                .where(_conversations.c.id == bindparam("conversation_id"))
                .values(
                    updated_at=func.now(),
                    title=func.coalesce(func.nullif(_conversations.c.title, ""), bindparam("new_title")),
                ),
                [{"conversation_id": key, "new_title": title} for key, title in titles.items()],
            )
        else:
            last = {}
        rows = await _item_rows(connection, turns, ids, last)
        if rows:
            await connection.execute(insert(_items), rows)


async def _insert_new(connection: AsyncConnection, turns: list[TurnRecord]) -> dict[int, int]:
    """Insert the conversations that arrive with their first turn; their ids, keyed by `id(turn)`.

    A conversation started in a project holds that project against deletion until the commit (as
    `find_project(lock=True)` does); one deleted while the turn ran starts detached."""
    if not turns:
        return {}
    wanted = {(t.conversation.user_id, t.conversation.project_id) for t in turns if t.conversation.project_id}
    kept: set[tuple[str, str]] = set()
    if wanted:
        found = await connection.execute(
            select(_projects.c.user_id, _projects.c.public_id)
            .where(tuple_(_projects.c.user_id, _projects.c.public_id).in_(sorted(wanted)))
            .order_by(_projects.c.id)
            .with_for_update(key_share=True)
        )
        kept = set(found.tuples().all())
    values = [
        {
            "public_id": t.conversation.public_id,
            "user_id": t.conversation.user_id,
            "title": t.conversation.title or t.title,
            "metadata": t.conversation.metadata_ or {},
            "project_id": t.conversation.project_id
            if (t.conversation.user_id, t.conversation.project_id) in kept
            else None,
        }
        for t in turns
    ]
    statement = insert(_conversations).returning(_conversations.c.id, sort_by_parameter_order=True)
    result = await connection.execute(statement, values)
    return {id(turn): key for turn, key in zip(turns, result.scalars().all(), strict=True)}


async def _item_rows(
    connection: AsyncConnection, turns: list[TurnRecord], ids: dict[int, int], last: dict[int, int]
) -> list[dict[str, Any]]:
    taken = await taken_ids(connection, [item for turn in turns for item in turn.items])
    rows: list[dict[str, Any]] = []
    for turn in turns:
        conversation_id = ids.get(id(turn))
        if conversation_id is None:  # deleted while the completion ran
            continue
        sequence = last.get(conversation_id) or 0
        rows += item_values(turn.items, conversation_id, sequence, taken)
        last[conversation_id] = sequence + len(turn.items)
    return rows


async def taken_ids(db: AsyncConnection | AsyncSession, items: list[NewItem]) -> set[str]:
    """Ids among the kept ones that already name an item (fresh random ids never collide)."""
    kept = {item.public_id for item in items if item.keep_id}
    if not kept:
        return set()
    return set(await db.scalars(select(_items.c.public_id).where(_items.c.public_id.in_(kept))))


def item_values(
    items: list[NewItem], conversation_id: int, last: int, taken: set[str], append_key: str | None = None
) -> list[dict[str, Any]]:
    """The rows of `items` appended after sequence `last`; a kept id already `taken` is replaced by a
    fresh one (and `taken` grows with the ids used)."""
    rows: list[dict[str, Any]] = []
    for sequence, item in enumerate(items, start=last + 1):
        public_id = item.public_id
        if public_id in taken:
            public_id = random_id(public_id.partition("_")[0] or "item")
        taken.add(public_id)
        row = {
            "public_id": public_id,
            "conversation_id": conversation_id,
            "sequence": sequence,
            "type": item.body["type"],
            "role": item.body.get("role"),
            "status": item.status,
            "body": {k: v for k, v in item.body.items() if k not in ("type", "role")},
            "finish_reason": item.finish_reason,
            "usage": item.usage,
            "incomplete_details": item.incomplete_details,
            "append_key": append_key,
        }
        if item.created_at is not None:  # only when importing; otherwise the database's now()
            row["created_at"] = item.created_at
        rows.append(row)
    return rows
