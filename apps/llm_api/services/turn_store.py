"""The hot path's SQL: a conversation with its history in one statement, many turns in one transaction.

A conversation turn is on every request's path twice: its history is read before the model is
called, and the turn is committed before the client is acknowledged. Both are hand-written
statements run on the pool's asyncpg connection (`apps.common.db.driver_connection`): through
SQLAlchemy's async layer each statement cost ~250 µs of CPU, and a turn took nine round trips (read:
BEGIN, SELECT, ROLLBACK; write: BEGIN, lock, last sequence, touch, insert, COMMIT), which made a
conversation turn cost five times a plain request's CPU (`bench/chat_cpu.py`). Now the read is one
round trip outside any transaction, and the write one statement (its own transaction) whatever the
number of turns: `TurnWriter` gathers the turns that finish while the previous batch is being
committed and writes them together (group commit), each still acknowledged only once its
statement has committed.

Numbering: the conversations a batch appends to are locked in id order (so two writers cannot
deadlock), and each item is numbered after its conversation's last sequence as the statement's
snapshot sees it. A concurrent writer that appended meanwhile (a response's items, another
process's batch) makes those numbers collide; the unique key then refuses the statement, and
`write_turns` runs it again in a fresh snapshot, so no number is ever taken twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from apps.common.db import HeldConnections, driver_connection
from apps.common.ids import random_id
from apps.common.storable import dumps, loads
from apps.llm_api.chat_tables import ConversationRow, ItemRow
from apps.llm_api.services.items import ItemBody

if TYPE_CHECKING:  # conversations.py delegates here, so only the type is taken from it
    from apps.llm_api.services.conversations import NewItem

_items = cast(Table, ItemRow.__table__)


@dataclass(slots=True)
class TurnConversation:
    """A conversation as the turn path uses it: a plain record with `ConversationRow`'s attributes.

    An ORM instance cost ~20 µs to build, and every attribute read goes through its
    instrumentation; a turn reads the public id several times (batching, numbering, the reply)."""

    id: int | None  # None: drafted for this turn, inserted with it
    public_id: str
    user_id: str
    title: str | None
    metadata_: dict[str, Any]
    project_id: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def of(cls, row: ConversationRow) -> TurnConversation:
        """The record of an ORM row, every column of it (the record's slots are the row's columns)."""
        return cls(**{name: getattr(row, name) for name in cls.__slots__})

    def as_row(self) -> ConversationRow:
        """The same conversation as a detached ORM instance (for code that takes one)."""
        return ConversationRow(
            id=self.id,
            public_id=self.public_id,
            user_id=self.user_id,
            title=self.title,
            metadata_=self.metadata_,
            project_id=self.project_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


# What a turn can be written for: the turn path's record, or a row read or made through the ORM.
AnyConversation = TurnConversation | ConversationRow


@dataclass
class TurnRecord:
    """One turn's write: the items to append to `conversation` (inserted first when `new`)."""

    conversation: AnyConversation
    items: list[NewItem]
    title: str | None

    @property
    def new(self) -> bool:
        """A conversation drafted for this turn (`conversation: {}`): it has no row, hence no id, yet."""
        return self.conversation.id is None


async def conversation_with_history(
    engine: AsyncEngine, user_id: str, public_id: str, limit: int, *, held: HeldConnections | None = None
) -> tuple[TurnConversation, list[ItemBody], str | None] | None:
    """The caller's conversation, its last `limit` completed items (oldest first) and its project's
    instructions (None without a project); one statement, outside any transaction, on a `held`
    connection when one is idle."""
    async with held.connection() if held is not None else driver_connection(engine) as connection:
        row = await connection.fetchrow(_HISTORY_SQL, public_id, user_id, max(limit, 0))
    if row is None:
        return None
    conversation = TurnConversation(
        row["id"],
        row["public_id"],
        row["user_id"],
        row["title"],
        row["metadata"],
        row["project_id"],
        row["created_at"],
        row["updated_at"],
    )
    history: list[ItemBody] = loads(row["history"]) if row["history"] is not None else []
    return conversation, history, row["project_instructions"]


async def write_turns(
    engine: AsyncEngine, turns: list[TurnRecord], *, held: HeldConnections | None = None
) -> None:
    """All `turns` in one statement (one round trip, its own transaction); a turn whose
    conversation was deleted meanwhile is skipped.

    The statement inserts the new conversations, locks and touches the continued ones (in id
    order), and inserts every item numbered after its conversation's last sequence. That number is
    read in the statement's snapshot, taken before the locks are waited for: when a writer that held
    one appended meanwhile, the numbers collide with its items, the unique key refuses the whole
    statement, and it runs again in a fresh snapshot. So no number is taken twice, and nobody waits
    for a lock to read them. With `held`, the connection is one the writers keep between batches.
    """
    new = [t for t in turns if t.new]
    appended: dict[int, str | None] = {}
    for turn in turns:
        key = turn.conversation.id
        if key is not None:  # not new
            appended[key] = appended.get(key) or turn.title
    continued = sorted(appended)
    conversations = _json(
        [
            {
                "public_id": t.conversation.public_id,
                "user_id": t.conversation.user_id,
                "title": t.conversation.title or t.title,
                "metadata": t.conversation.metadata_ or {},
                "project_id": t.conversation.project_id,
            }
            for t in new
        ]
    )
    async with held.connection() if held is not None else driver_connection(engine) as connection:
        keeps_ids = any(item.keep_id for turn in turns for item in turn.items)
        items = _item_rows(turns, await _taken(connection, turns) if keeps_ids else None)
        if not continued and not any(t.conversation.project_id for t in new):
            # Nothing to lock, touch or number after: each item's number is its position.
            await connection.execute(_NEW_TURNS_SQL, conversations, items)
            return
        for attempt in range(1, _NUMBERING_ATTEMPTS + 1):
            try:
                await connection.execute(
                    _TURNS_SQL, conversations, continued, [appended[key] for key in continued], items
                )
                return
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _SEQUENCE_KEY or attempt == _NUMBERING_ATTEMPTS:
                    raise


def _item_rows(turns: list[TurnRecord], taken: set[str] | None = None) -> str:
    """The items of `turns` as one JSON array of rows, each naming its conversation by public id with
    its position within the batch; a kept id already `taken` is replaced by a fresh one.

    One document, not an array per column: asyncpg encodes ten array parameters element by element
    (~0.1 ms of CPU per statement), orjson the whole batch at once."""
    rows: list[dict[str, Any]] = []
    positions: dict[str, int] = {}
    for turn in turns:
        conversation = turn.conversation.public_id
        for item in turn.items:
            position = positions[conversation] = positions.get(conversation, 0) + 1
            rows.append(
                {
                    "conversation": conversation,
                    "public_id": item.public_id if taken is None else _unused(item.public_id, taken),
                    "position": position,
                    "type": item.body["type"],
                    "role": item.body.get("role"),
                    "status": item.status,
                    "body": _stored_body(item.body),
                    "finish_reason": item.finish_reason,
                    "usage": item.usage,
                    "incomplete_details": item.incomplete_details,
                }
            )
    return _json(rows)


def _unused(public_id: str, taken: set[str]) -> str:
    """`public_id`, or a fresh id of its kind when it is already `taken`; `taken` grows with it."""
    if public_id in taken:
        public_id = random_id(public_id.partition("_")[0] or "item")
    taken.add(public_id)
    return public_id


def _stored_body(body: ItemBody) -> dict[str, Any]:
    """An item's body as stored: `type` and `role` have columns of their own."""
    return {k: v for k, v in body.items() if k not in ("type", "role")}


def _json(value: Any) -> str:
    # The engine's JSONB codec takes JSON text; a None is stored as JSON null, as the ORM does. An
    # upstream's integer past 64 bits is stored exactly (`apps.common.storable`).
    return dumps(value).decode()


async def _taken(connection: asyncpg.Connection, turns: list[TurnRecord]) -> set[str]:
    kept = [item.public_id for turn in turns for item in turn.items if item.keep_id]
    rows = await connection.fetch(
        "SELECT public_id FROM conversation_items WHERE public_id = ANY($1::varchar[])", kept
    )
    return {row["public_id"] for row in rows}


# Every conversation column (`c.*`, read by name), the project's instructions, and the recent
# completed items as one JSON array, oldest first, each item its body with its `type` and `role`
# (one row to read and one document to parse: orjson reads it several times faster than rows).
# The array is assembled as text: the stored body's own text with the two columns spliced in before
# its first key (it holds neither: `_stored_body`). Building each item as jsonb and the array with
# `jsonb_agg` cost Postgres 0.47-0.52 ms of CPU per read of a 50-item history, this 0.19-0.24 ms.
_HISTORY_SQL = """
SELECT c.*, p.instructions AS project_instructions, (
    SELECT '[' || string_agg(r.item, ',' ORDER BY r.sequence) || ']' FROM (
        SELECT i.sequence,
               '{"type":' || to_json(i.type)::text
               || CASE WHEN i.role IS NULL THEN '' ELSE ',"role":' || to_json(i.role)::text END
               || CASE WHEN i.body = '{}'::jsonb THEN '}' ELSE ',' || substr(i.body::text, 2) END
               AS item
        FROM conversation_items i
        WHERE i.conversation_id = c.id AND i.status = 'completed'
        ORDER BY i.sequence DESC LIMIT $3
    ) r
) AS history
FROM conversations c
LEFT JOIN projects p ON p.public_id = c.project_id AND p.user_id = c.user_id
WHERE c.public_id = $1 AND c.user_id = $2"""

_SEQUENCE_KEY = "uq_conversation_items_conversation_id_sequence"
_NUMBERING_ATTEMPTS = 5

# What both turn statements share: the items' columns, their record in the JSON parameter
# (`_item_rows`), and the values taken from it (`json_to_recordset` reads a JSON null as SQL NULL;
# a missing usage is stored as JSON null, as every other path stores it).
_INSERT_ITEMS = """INSERT INTO conversation_items
    (public_id, conversation_id, sequence, type, role, status, body, finish_reason, usage,
     incomplete_details)"""
_ITEM_RECORD = """AS i(conversation varchar, public_id varchar, position int, type varchar, role varchar,
         status varchar, body jsonb, finish_reason varchar, usage jsonb, incomplete_details jsonb)"""
_ITEM_VALUES = """i.type, i.role, i.status, i.body, i.finish_reason, coalesce(i.usage, 'null'),
       coalesce(i.incomplete_details, 'null')"""

# $1: the new conversations (public id, user, title, metadata, project) as a JSON array; $2-$3: the
# continued ones (id, title for an untitled one); $4: the items (`_item_rows`). A new conversation's
# project is held (key share) against deletion until the commit; one deleted while the turn ran
# starts detached (`kept` misses it).
_TURNS_SQL = f"""
WITH n AS (
    SELECT * FROM json_to_recordset($1::json)
        AS n(public_id varchar, user_id varchar, title varchar, metadata jsonb, project_id varchar)
), kept AS (
    SELECT p.user_id, p.public_id FROM projects p
    WHERE (p.user_id, p.public_id) IN (SELECT n.user_id, n.project_id FROM n)
    ORDER BY p.id
    FOR KEY SHARE
), new AS (
    INSERT INTO conversations (public_id, user_id, title, metadata, project_id)
    SELECT n.public_id, n.user_id, n.title, n.metadata, kept.public_id
    FROM n LEFT JOIN kept ON kept.user_id = n.user_id AND kept.public_id = n.project_id
    RETURNING id, public_id
), locked AS (
    SELECT c.id FROM conversations c WHERE c.id = ANY($2::bigint[]) ORDER BY c.id FOR UPDATE
), touched AS (
    UPDATE conversations c
    SET updated_at = now(), title = coalesce(nullif(c.title, ''), t.title)
    FROM locked JOIN unnest($2::bigint[], $3::varchar[]) AS t(id, title) ON t.id = locked.id
    WHERE c.id = locked.id
    RETURNING c.id, c.public_id
), stored AS (
    SELECT id, public_id FROM new UNION ALL SELECT id, public_id FROM touched
)
{_INSERT_ITEMS}
SELECT i.public_id, s.id,
       coalesce((SELECT max(x.sequence) FROM conversation_items x WHERE x.conversation_id = s.id), 0)
       + i.position,
       {_ITEM_VALUES}
FROM json_to_recordset($4::json)
    {_ITEM_RECORD}
JOIN stored s ON s.public_id = i.conversation"""  # noqa: S608 (module constants only)

# Only new conversations, none in a project (every turn of `bench/load.py`'s conversation series):
# no project to hold, no conversation to lock or touch, no earlier item to number after. With the
# JSON parameters, a one-turn write of a new conversation went from 0.32-0.36 ms of llm-api CPU and
# 0.34-0.37 ms of Postgres CPU to 0.28-0.29 and 0.28-0.30 ms (against pgserver, one client).
_NEW_TURNS_SQL = f"""
WITH new AS (
    INSERT INTO conversations (public_id, user_id, title, metadata)
    SELECT * FROM json_to_recordset($1::json)
        AS n(public_id varchar, user_id varchar, title varchar, metadata jsonb)
    RETURNING id, public_id
)
{_INSERT_ITEMS}
SELECT i.public_id, new.id, i.position,
       {_ITEM_VALUES}
FROM json_to_recordset($2::json)
    {_ITEM_RECORD}
JOIN new ON new.public_id = i.conversation"""  # noqa: S608 (module constants only)


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
        row = {
            "public_id": _unused(item.public_id, taken),
            "conversation_id": conversation_id,
            "sequence": sequence,
            "type": item.body["type"],
            "role": item.body.get("role"),
            "status": item.status,
            "body": _stored_body(item.body),
            "finish_reason": item.finish_reason,
            "usage": item.usage,
            "incomplete_details": item.incomplete_details,
            "append_key": append_key,
        }
        if item.created_at is not None:  # only when importing; otherwise the database's now()
            row["created_at"] = item.created_at
        rows.append(row)
    return rows
