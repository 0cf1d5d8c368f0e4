"""Persistence of responses, their input items and tool executions (conversations belong to llm-api).

Every read is scoped to the caller: a response of another user is reported exactly like one that
does not exist.

Writes: a response is written once, when it ends, in one statement (response row, input items,
tool executions). A background response is also inserted when it starts, so it
can be polled; its end is then an update plus the tool executions, in one transaction.

Orphans: a background response whose process died stays `in_progress` in its row; `fail_orphans`,
run periodically by every replica, fails rows older than the overall deadline allows.

Event log (`services/events.py`): a streamed background response's events are written in batches
(`append_events`, one statement that also notifies followers); its last events go in the final
transaction with its ending (`save`), so a reader that sees the ending sees every event.

History replay: `previous_response_id` walks the chain of earlier responses (a recursive query) and
replays each one's input items then output items, oldest first. (`conversation` is replayed from
llm-api, which owns conversations.)
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import driver_connection, session_factory, transaction
from apps.common.errors import not_found
from apps.common.storable import dumps
from apps.response_api.db import ResponseInputItem, ResponseRow, ToolExecution
from apps.response_api.services.cancel_bus import CHANNEL, EVENTS_CHANNEL
from apps.response_api.services.events import Frame
from apps.response_api.types import ResponseBody, RunStatus, ToolExecutionRow

MAX_CHAIN = 1000
RUNNING: tuple[RunStatus, ...] = ("queued", "in_progress")

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

# A finished response in one round trip: data-modifying CTEs run as one statement, and foreign keys
# are checked at its end, so the response and its children can go in together. Run on the driver
# (asyncpg's numbered parameters): see `ResponseStore.insert`.
_INSERT = """
    WITH response AS (
        INSERT INTO responses (id, user_id, status, model, previous_response_id, conversation_id, body,
                               event_log)
        VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS jsonb), $8)
    ), items AS (
        INSERT INTO response_input_items (response_id, position, item)
        SELECT $1, ordinality - 1, value FROM jsonb_array_elements(CAST($9 AS jsonb)) WITH ORDINALITY
    )
    INSERT INTO tool_executions (response_id, user_id, call_id, tool_name, arguments, result, error_message,
                                 status, execution_order, started_at, duration_ms)
    SELECT response_id, user_id, call_id, tool_name, arguments, result, error_message,
           status, execution_order, started_at, duration_ms
    FROM jsonb_to_recordset(CAST($10 AS jsonb)) AS x(
        response_id text, user_id text, call_id text, tool_name text, arguments jsonb, result jsonb,
        error_message text, status text, execution_order int, started_at timestamptz, duration_ms float8)
"""

# Every response ends within the overall deadline, so one still "running" well past it was left by a
# process that died; whichever replica sweeps first records it as failed.
_FAIL_ORPHANS = text(
    """
    UPDATE responses
    SET status = 'failed', updated_at = now(),
        body = body || jsonb_build_object(
            'status', 'failed',
            'error', jsonb_build_object(
                'code', 'server_error',
                'message', 'The response was interrupted: the server running it stopped.'))
    WHERE status IN ('queued', 'in_progress') AND created_at < now() - make_interval(secs => :age)
    RETURNING id, event_log
    """
)


# A batch of events, and a notice to every replica's followers (sent when the statement commits).
# A batch sent again after a lost commit answer skips the events already stored.
_APPEND_EVENTS = text(
    """
    WITH stored AS (
        INSERT INTO response_events (response_id, sequence_number, frame)
        SELECT :id, number, frame
        FROM unnest(CAST(:numbers AS int[]), CAST(:frames AS bytea[])) AS e(number, frame)
        ON CONFLICT DO NOTHING
    )
    SELECT pg_notify(:channel, :id)
    """
)

# The status and the events after a cursor, in one snapshot (see `services/events.py`).
_EVENTS_AFTER = text(
    """
    SELECT r.status, e.sequence_number, e.frame
    FROM responses r
    LEFT JOIN LATERAL (
        SELECT sequence_number, frame FROM response_events
        WHERE response_id = r.id AND sequence_number > :after
        ORDER BY sequence_number LIMIT :limit
    ) e ON true
    WHERE r.id = :id AND r.user_id = :user_id
    ORDER BY e.sequence_number
    """
)


class ResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A single statement is atomic by itself: no BEGIN/COMMIT round trips around it.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = session_factory(engine)

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

    async def insert(
        self,
        body: ResponseBody,
        input_items: list[dict[str, Any]],
        user_id: str,
        *,
        executions: list[ToolExecutionRow] | None = None,
        event_log: bool = False,
    ) -> None:
        """Store a response with its input items and tool executions: one statement.

        It runs on the driver itself (`driver_connection`), outside any transaction (one statement
        is atomic alone): every stored response makes this write, and SQLAlchemy's execute with its
        tracing cost 0.67 ms of CPU against the driver's 0.25 (so the statement has no span of its
        own). A lost connection is raised as SQLAlchemy's, so `durably` retries it like any other.
        """
        conversation = body["conversation"]
        async with driver_connection(self._engine) as driver:
            await driver.execute(
                _INSERT,
                body["id"],
                user_id,
                body["status"],
                body["model"],
                body["previous_response_id"],
                conversation["id"] if conversation else None,
                _json(body),
                event_log,
                _json(input_items),
                _json(executions or []),
            )

    async def save(
        self,
        body: ResponseBody,
        executions: list[ToolExecutionRow] | None = None,
        events: list[Frame] | None = None,
    ) -> None:
        """A background response's ending: its row, tool executions and last events, one transaction."""
        conversation = body["conversation"]  # None if it was deleted while the response ran
        async with transaction(self._sessions) as session:
            if events is not None:  # a logged response: its followers are told it ended, events or not
                await session.execute(_APPEND_EVENTS, _events_params(body["id"], events))
            await session.execute(
                update(ResponseRow)
                .where(ResponseRow.id == body["id"])
                .values(
                    status=body["status"],
                    body=body,
                    conversation_id=conversation["id"] if conversation else None,
                    updated_at=text("now()"),
                )
            )
            await self._record(session, executions)

    async def detach_conversation(self, body: ResponseBody) -> None:
        """A stored response's conversation was deleted while it ended: the row says it has none."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(ResponseRow)
                .where(ResponseRow.id == body["id"])
                .values(body=body, conversation_id=None, updated_at=text("now()"))
            )

    async def append_events(self, response_id: str, events: list[Frame]) -> None:
        if events:
            async with self._autocommit.connect() as connection:
                await connection.execute(_APPEND_EVENTS, _events_params(response_id, events))

    async def events_after(
        self, user_id: str, response_id: str, after: int, limit: int
    ) -> tuple[RunStatus, list[Frame]] | None:
        """(status, up to `limit` events after `after`), or None if the caller has no such response."""
        async with self._autocommit.connect() as connection:
            rows = (
                await connection.execute(
                    _EVENTS_AFTER, {"id": response_id, "user_id": user_id, "after": after, "limit": limit}
                )
            ).all()
        if not rows:
            return None
        frames = [(row.sequence_number, bytes(row.frame)) for row in rows if row.sequence_number is not None]
        return cast(RunStatus, rows[0].status), frames

    async def has_event_log(self, user_id: str, response_id: str) -> bool:
        """Whether the caller's response keeps an event log (404 if there is no such response)."""
        async with self._autocommit.connect() as connection:
            flag = await connection.scalar(
                select(ResponseRow.event_log).where(
                    ResponseRow.id == response_id, ResponseRow.user_id == user_id
                )
            )
        if flag is None:
            raise not_found("Response", response_id)
        return bool(flag)

    async def exists(self, response_id: str) -> bool:
        """Whether a response row is stored (a retried insert asks: did the lost commit land?)."""
        async with self._autocommit.connect() as connection:
            found = await connection.scalar(select(ResponseRow.id).where(ResponseRow.id == response_id))
        return found is not None

    async def ended(self, response_id: str) -> bool:
        """Whether a response's row records an ending (a retried final save asks the same)."""
        async with self._autocommit.connect() as connection:
            status = await connection.scalar(select(ResponseRow.status).where(ResponseRow.id == response_id))
        return status is not None and status not in RUNNING

    async def fail_orphans(self, older_than_seconds: float) -> int:
        """Mark responses left running by a dead process as failed; returns how many."""
        async with self._autocommit.connect() as connection:
            rows = (await connection.execute(_FAIL_ORPHANS, {"age": older_than_seconds})).all()
            for row in rows:
                if row.event_log:  # its followers learn it ended
                    await connection.execute(select(func.pg_notify(EVENTS_CHANNEL, row.id)))
        return len(rows)

    async def get(self, user_id: str, response_id: str) -> ResponseBody:
        async with self._sessions() as session:
            body = await session.scalar(
                select(ResponseRow.body).where(ResponseRow.id == response_id, ResponseRow.user_id == user_id)
            )
        if body is None:
            raise not_found("Response", response_id)
        return cast(ResponseBody, dict(body))  # stored as built (`ResponseState.body`)

    async def mark_cancelled(self, user_id: str, response_id: str) -> ResponseBody:
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
                await session.execute(select(func.pg_notify(EVENTS_CHANNEL, response_id)))
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

    async def delete(self, user_id: str, response_id: str, *, executions: bool = True) -> None:
        """Delete the caller's response (404 if none) and, unless `executions=False`, the records of
        its tool calls."""
        async with transaction(self._sessions) as session:
            deleted = await session.scalar(
                delete(ResponseRow)
                .where(ResponseRow.id == response_id, ResponseRow.user_id == user_id)
                .returning(ResponseRow.id)
            )
            if deleted is None:
                raise not_found("Response", response_id)
            if not executions:
                return
            await session.execute(
                delete(ToolExecution).where(
                    ToolExecution.response_id == response_id, ToolExecution.user_id == user_id
                )
            )

    async def record_executions(self, rows: list[ToolExecutionRow]) -> None:
        if rows:
            async with transaction(self._sessions) as session:
                await self._record(session, rows)

    @staticmethod
    async def _record(session: AsyncSession, rows: list[ToolExecutionRow] | None) -> None:
        if rows:
            await session.execute(insert(ToolExecution), rows)


def _events_params(response_id: str, events: list[Frame]) -> dict[str, Any]:
    return {
        "id": response_id,
        "numbers": [number for number, _ in events],
        "frames": [frame for _, frame in events],
        "channel": EVENTS_CHANNEL,
    }


def _json(value: Any) -> str:
    return dumps(value).decode()  # an integer past 64 bits exactly (`apps.common.storable`)
