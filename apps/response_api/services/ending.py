"""A response's writes: stored first, then its client is told (the durability decisions of
`services/responses.py`).

`ResponseWriter.insert` is the write behind a background response's 200 (and a foreground one's
ending); `finish` ends a run: the conversation append, the final write with the last logged events,
then the terminal event, or, when storage failed, an `error` instead.

A plain (foreground, not streamed) response that completed writes its append and its row together
(`_append_and_insert`): nobody knows its id before its 200 (no event announced it, and responses are
not listed), so a row stored while the append may still fail is seen by nobody, and the client is
still answered only once both are stored. Each failure undoes what it can of the other: a row whose
append failed is deleted (its tool executions stay: those calls ran); a new conversation whose row
could not be written is withdrawn (llm-api keeps it if anything else is in it); a conversation found
deleted meanwhile is then detached from the row too. A stream (its id was announced) and a
background response keep the order append, then row. Whichever the order, a response whose row could
not be written after its append landed takes its items back out of the conversation the caller named
(`_withdraw_items`; llm-api keeps a chat turn it could not store out too), since its client is told
it failed. What stays when an undo fails too (or the process dies between) is a state users reach
anyway: a row naming a conversation without its items (as after deleting them), or a conversation
holding the items of a response the client was told failed. An append that failed past its budget
(llm-api away) may have landed all the same (its answers lost) or may land still (a delivery in
flight), whatever the response's kind: a background one is saved as failed
(`conversation_unavailable`), a foreground one's client gets its error, and the append is withdrawn
afterwards in a task of its own (`_withdraw_later`: retried for the background budget, nobody
waits; a plain response's new conversation whole, its id unknown to its client); llm-api then
refuses any later delivery of it. Every write goes through
`durably` with its budget: `STORAGE_RETRY_SECONDS` when a client waits, the longer
`BACKGROUND_STORAGE_RETRY_SECONDS` for a background response's end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from apps.common.durable import StorageUnavailable, durably
from apps.common.errors import APIError
from apps.response_api.services.body import error_body
from apps.response_api.services.conversations import ConversationMissing, Conversations, LlmApiAway
from apps.response_api.services.runs import ResponseRun
from apps.response_api.services.store import ResponseStore
from apps.response_api.types import ResponseBody, ToolExecutionRow

log = logging.getLogger(__name__)

# How long a failed response's ending tries to create its new, empty conversation.
EMPTY_CREATE_BUDGET = 1.0
# One attempt at undoing a write the client is told failed, on that client's time.
WITHDRAW_SECONDS = 2.0


class ResponseWriter:
    def __init__(
        self, store: ResponseStore, conversations: Conversations, *, budget: float, background_budget: float
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._budget = budget
        self._background_budget = background_budget
        self._withdrawing: set[asyncio.Task[None]] = set()  # `_withdraw_later`, until they end

    async def insert(
        self,
        body: ResponseBody,
        input_items: list[dict[str, Any]],
        user_id: str,
        *,
        executions: list[ToolExecutionRow] | None = None,
        event_log: bool = False,
    ) -> None:
        """Store a new response row (a retry first asks whether a lost commit landed)."""

        async def insert() -> None:
            await self._store.insert(body, input_items, user_id, executions=executions, event_log=event_log)

        await durably(
            insert,
            budget=self._budget,
            what="this response",
            committed=lambda: self._store.exists(body["id"]),
        )

    async def finish(self, run: ResponseRun, executions: list[ToolExecutionRow]) -> None:
        """Store the final state, then tell the client: the terminal event, or an error instead."""
        state = run.state
        try:
            await self._persist(run, executions)
        except APIError as exc:
            run.storage_error = exc
            state.storage_failed({"code": exc.code or "storage_unavailable", "message": exc.message})
        except Exception:
            log.exception("storing a response failed", extra={"response_id": state.id})
            run.storage_error = APIError(500, "The response could not be stored.", code="storage_failed")
            state.storage_failed({"code": "storage_failed", "message": run.storage_error.message})
        else:
            state.deliver_end()
        finally:
            state.close_stream()
            leftover = state.detach_log()  # only if the final write failed before taking it
            if leftover is not None:
                await leftover.close()

    async def _persist(self, run: ResponseRun, executions: list[ToolExecutionRow]) -> None:
        if _overlaps(run):
            await self._append_and_insert(run, executions)
            run.state.end_event()
            return
        appended = await self._add_to_conversation(run)
        try:
            await self._write_row(run, executions)
        except Exception:
            if appended:
                await self._withdraw_items(run)
            raise

    async def _write_row(self, run: ResponseRun, executions: list[ToolExecutionRow]) -> None:
        """The row (or the final write of a background one), after its append."""
        body = run.state.body
        end = run.state.end_event()  # numbered now, sent once stored (and logged with the ending)
        if run.background:
            event_log = run.state.detach_log()
            events = await event_log.close() if event_log is not None else None
            if events is not None and end is not None:
                events.append(end)

            async def save() -> None:
                await self._store.save(body, executions, events)

            await durably(
                save,
                budget=self._background_budget,
                what="this response",
                committed=lambda: self._store.ended(body["id"]),
            )
        elif body["store"]:
            await self.insert(body, run.input_items, run.user_id, executions=executions)
        else:
            # Nothing was promised to the client (`store: false`): its tool calls are recorded before
            # it is answered, like any other, but a failure to do so is logged, not reported.
            await self.record_executions(body["id"], executions)

    async def _append_and_insert(self, run: ResponseRun, executions: list[ToolExecutionRow]) -> None:
        """A plain response's append and row, together (see the module docstring)."""
        body = run.state.body
        conversation = body["conversation"]
        assert conversation is not None
        row = body.copy()  # as it is now: the append may find the conversation gone and detach it
        # One task, not two (`gather`): the append runs in this one. A cancel (the server stopping)
        # reaches whichever is awaited, and the insert with it.
        inserting = asyncio.create_task(self.insert(row, run.input_items, run.user_id, executions=executions))
        appended: Exception | None = None
        inserted: Exception | None = None
        try:
            await self._add_to_conversation(run)
        except asyncio.CancelledError:
            if not inserting.cancel() and not inserting.cancelled():
                inserting.exception()  # it ended first: its failure is moot now, but retrieved
            raise
        except Exception as exc:
            appended = exc
        try:
            await inserting
        except Exception as exc:
            inserted = exc
        if inserted is not None:
            if run.new_conversation:  # made by the append, unless that failed too (then a no-op)
                await self.withdraw(conversation["id"], run.principal.forward_headers(), key=run.state.id)
            elif body["conversation"] is not None:  # a failed append may have landed all the same
                await self._withdraw_items(run)
            if appended is not None and not isinstance(inserted, APIError):
                # The client is told of the append's failure; a bug in the insert is not an outage
                # and must not go unseen (`finish` logs only what it raises).
                log.error("storing a response failed", exc_info=inserted, extra={"response_id": run.state.id})
            raise appended or inserted
        if appended is not None:
            await self._undo_row(run)
            raise appended
        if body["conversation"] is None:  # deleted while the response ended
            await durably(
                lambda: self._store.detach_conversation(body), budget=self._budget, what="this response"
            )

    async def _undo_row(self, run: ResponseRun) -> None:
        """Delete the row of a response the client is told failed (best effort, logged). Its tool
        executions stay: those calls did run, and are recorded as for a response not stored."""
        try:
            await durably(
                lambda: self._store.delete(run.user_id, run.state.id, executions=False),
                budget=EMPTY_CREATE_BUDGET,
                what="this response",
            )
        except APIError as exc:
            if exc.status_code != 404:  # 404: an insert whose answer was lost had not landed after all
                log.warning(
                    "a response whose append failed stays stored",
                    extra={"response_id": run.state.id, "error": exc.message},
                )
        except Exception as exc:
            log.warning(
                "a response whose append failed stays stored",
                extra={"response_id": run.state.id, "error": repr(exc)},
            )

    async def withdraw(self, conversation_id: str, headers: dict[str, str], *, key: str) -> None:
        """Withdraw the new conversation of response `key`, which was not stored (one attempt, logged)."""
        await _undo(
            self._conversations.withdraw(conversation_id, headers, key=key),
            "a new conversation of a response that was not stored stays",
            key,
        )

    async def _withdraw_items(self, run: ResponseRun) -> None:
        """Take the items of a response that was not stored back out of the conversation it named
        (one attempt, logged)."""
        conversation = run.state.body["conversation"]
        assert conversation is not None
        await _undo(
            self._conversations.withdraw_items(
                conversation["id"], run.principal.forward_headers(), key=run.state.id
            ),
            "the items of a response that was not stored stay in its conversation",
            run.state.id,
        )

    def _withdraw_later(self, run: ResponseRun, conversation_id: str) -> None:
        """Withdraw a failed append in a task of its own (nobody waits for it): its items, or the
        whole of a plain response's new conversation, which that append made and whose id its
        client never learned (`run.new_conversation`; llm-api keeps it if anything else is in it)."""
        task = asyncio.create_task(
            self._withdraw_landed(
                conversation_id, run.principal.forward_headers(), run.state.id, whole=run.new_conversation
            ),
            name="withdraw-failed-append",
        )
        self._withdrawing.add(task)
        task.add_done_callback(self._withdrawing.discard)

    async def _withdraw_landed(
        self, conversation_id: str, headers: dict[str, str], key: str, *, whole: bool
    ) -> None:
        """Retried while llm-api is away, for the background budget (it is likely why the append
        failed); then, or on any other refusal, logged."""
        withdraw = self._conversations.withdraw if whole else self._conversations.withdraw_items
        try:
            await durably(
                lambda: withdraw(conversation_id, headers, key=key),
                budget=self._background_budget,
                what="the withdrawal of a failed response's items",
                transient=lambda exc: isinstance(exc, LlmApiAway),
            )
        except (Exception, asyncio.CancelledError) as exc:
            error = exc.message if isinstance(exc, APIError) else repr(exc)
            log.warning(
                "the items of a failed response may stay in its conversation",
                extra={"response_id": key, "error": error},
            )
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def close(self) -> None:
        """Stop the withdrawals still retrying (the server is stopping); what they leave is logged."""
        for task in list(self._withdrawing):
            task.cancel()
        if self._withdrawing:
            await asyncio.wait(list(self._withdrawing))

    async def record_executions(self, response_id: str, executions: list[ToolExecutionRow]) -> None:
        """Record the tool executions of a response that is not stored; best effort (logged)."""
        if not executions:
            return
        try:
            await durably(
                lambda: self._store.record_executions(executions),
                budget=self._budget,
                what="the tool executions",
            )
        except Exception:
            log.exception(
                "tool executions of an unstored response were lost", extra={"response_id": response_id}
            )

    async def _add_to_conversation(self, run: ResponseRun) -> bool:
        """Append the response's items to its conversation; whether they landed there."""
        body = run.state.body
        conversation = body.get("conversation")
        if not body["store"] or not conversation:
            return False
        if body["status"] not in ("completed", "incomplete"):
            # Failed and cancelled responses add nothing, but a new conversation is still made, so
            # the id the response reports can be continued; an existing one that was deleted
            # meanwhile is reported as none (one cheap read, only on this path). The response has
            # failed already: if llm-api cannot answer (likely why it failed), that is logged.
            try:
                if run.new_conversation:
                    await self._append(run, conversation["id"], [], budget=EMPTY_CREATE_BUDGET)
                else:
                    headers = run.principal.forward_headers()
                    if not await self._conversations.exists(conversation["id"], headers):
                        # Deleted meanwhile: reported as a completed response reports it (`_append`).
                        run.state.body["conversation"] = None
            except APIError as exc:
                log.warning("could not create or read the conversation", extra={"error": exc.message})
            return False
        budget = self._background_budget if run.background else self._budget
        try:
            await self._append(run, conversation["id"], [*run.input_items, *body["output"]], budget=budget)
        except APIError as exc:
            log.warning("could not extend the conversation", extra={"error": exc.message})
            if isinstance(exc, StorageUnavailable | LlmApiAway):
                # llm-api away past the budget: an attempt may have landed all the same (its answer
                # lost), or may land still; its client is told the response failed, so it is taken
                # back out, for whoever waits or not.
                self._withdraw_later(run, conversation["id"])
            if not run.background:
                raise  # the client is told (a 503, or an SSE error) and nothing is stored
            # Nobody waits for a background response: whoever polls it reads that it failed.
            message = "The response could not be added to its conversation; run it again."
            body.update(
                {
                    "status": "failed",
                    "error": error_body("conversation_unavailable", message),
                    "completed_at": None,
                }
            )
            return False
        return body["conversation"] is not None  # None: found deleted meanwhile (`_append`)

    async def _append(
        self, run: ResponseRun, conversation_id: str, items: Sequence[Mapping[str, Any]], *, budget: float
    ) -> None:
        try:
            await self._conversations.append(
                conversation_id,
                items,
                run.principal.forward_headers(),
                key=run.state.id,
                budget=budget,
                create=run.new_conversation,
            )
        except ConversationMissing:
            # Deleted by its user meanwhile: the response is in no conversation now, and says so.
            log.info("conversation deleted during the response", extra={"response_id": run.state.id})
            run.state.body["conversation"] = None


async def _undo(call: Awaitable[None], failure: str, response_id: str) -> None:
    """One attempt at undoing a write of a response whose client is told it failed; a failure is
    logged. Bounded: the client waits for its error meanwhile, and a stuck llm-api must not hold it."""
    try:
        async with asyncio.timeout(WITHDRAW_SECONDS):
            await call
    except (APIError, TimeoutError) as exc:
        error = exc.message if isinstance(exc, APIError) else "timed out"
        log.warning(failure, extra={"response_id": response_id, "error": error})


def _overlaps(run: ResponseRun) -> bool:
    """Whether the response's append and row are written together: a plain stored response that
    completed, in a conversation (see the module docstring)."""
    body = run.state.body
    return (
        not run.background
        and not run.request.stream
        and body["store"]
        and body["conversation"] is not None
        and body["status"] in ("completed", "incomplete")
    )
