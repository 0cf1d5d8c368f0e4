"""The Responses service: create, run, read, cancel and delete responses.

Decisions:
- Every response runs in its own task (`RunRegistry`), bounded by the overall `RESPONSE_DEADLINE`;
  running out of time ends it `failed` with code `timeout`, never with a 500.
- MCP tools are listed once per response from mcp-tools (`tools/list`), when the request names an
  `mcp` tool, or names no tools at all and `OFFER_MCP_TOOLS_BY_DEFAULT` is on. If mcp-tools cannot be
  reached for tools nobody asked for, the response goes on without them.
- Conversations belong to llm-api (`services/conversations.py`): `conversation` replays its items
  (whoever wrote them: responses, chat completions, `conversations.items.create`);
  `previous_response_id` replays that response's chain from this app's own store. Naming both is a
  400, as at OpenAI. Each stored response belongs to a conversation (the one named, the previous
  response's, or a new one) and reports it in `conversation.id`. A new conversation's id is chosen
  here and llm-api creates it when the response ends, with its items (empty if it failed or was
  cancelled): one call to llm-api per response instead of two (`services/conversations.py`).
- A stored response that ends `completed` or `incomplete` appends its input and output items to its
  conversation, in OpenAI's item shapes (one llm-api transaction, keyed by the response id so a
  retry after a lost answer stores nothing twice, and retried through a short llm-api outage like
  any storage write): before its own row is written, or, for a plain response, whose id nobody
  knows before its 200, while it is (`services/ending.py`: what each failure leaves). If llm-api
  cannot take them, that is a storage failure like any other (below): the client gets a 503 or an
  SSE `error` and the response is not stored; a background response is stored `failed`
  (`conversation_unavailable`), since nobody is waiting to be told.
  Failed and cancelled responses add nothing.
- A new conversation is made by the response's ending, unless the client learns its id before
  that (a streamed or background response: `response.created`, the 200): then it is made before
  the id is announced, so a delete meanwhile really deletes it. A background response makes it
  before its insert (if that insert then fails, the client gets a 503 and never learns the id: the
  empty conversation is withdrawn, `ResponseWriter.withdraw`). A foreground stream makes it while the
  run starts (tools listing, first model round: it does not add an llm-api round trip to the time
  to first token), but no tool runs before it exists (approved calls and the model's calls wait for
  it: `ToolLoop`'s `before_tools`), and the stream's start (status, headers, `response.created`
  and all after it) and its ending wait for it too. If it cannot be made, the run is cancelled and
  gone before the client gets the 503 (nothing was sent, no tool ran, nothing is stored); if the
  model round fails first, the conversation stays, empty, as any failed response leaves its new one.
  A conversation deleted while the response ran is neither written to nor made again: the response
  is stored and reported with `conversation: null` (it is in no conversation), whether it
  completed (its append finds it gone) or failed or was cancelled (its ending reads whether it is
  still there). A response continuing, by `previous_response_id`, one whose conversation is
  gone (null, or deleted since) starts a new one.
- An `mcp` tool in the request gets an `mcp_list_tools` output item (the tools offered), unless the
  history or the input already holds one for that server label, as at OpenAI.
- A foreground response is written once, when it ends; a background one also when it starts, so
  it can be polled. (A foreground response that is still running is therefore visible, and
  cancellable, only on the replica that runs it.) A background response created with `stream: true`
  also keeps its events (`services/events.py`), so `GET /v1/responses/{id}?stream=true&starting_after=N`
  can replay and follow it on any replica; others are refused with a 400 there, as at OpenAI.
- Durability (`services/ending.py`): the client is acknowledged only for what is stored. The
  background insert comes before the 200 that returns the id; the final write (state, input items,
  tool executions, the last logged events: one transaction) and the conversation append (which
  also creates a new conversation) come before the plain 200 and before the stream's terminal event.
  Writes are retried through a short outage (`STORAGE_RETRY_SECONDS`); past that the client gets a
  503 or an SSE `error` event and nothing was written. A background response's end, which nobody
  waits for, is retried for longer (`BACKGROUND_STORAGE_RETRY_SECONDS`).
- A poll never sees an ending before it is stored: while a response in this process has ended but
  is not yet written, `get` waits for the write and answers from the database.
- `store: false` responses are neither stored nor retrievable (so they cannot run in background), but
  their tool executions are recorded like any other.
- A foreground, non-streamed request whose first model call is refused by llm-api with a 4xx (an
  unknown model, say) gets that status and message; the failed response is still stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from apps.common.auth.principal import Principal
from apps.common.errors import APIError, bad_request
from apps.response_api.schemas import CreateResponseRequest, check_tools
from apps.response_api.services.approvals import approved_requests
from apps.response_api.services.body import initial_body
from apps.response_api.services.conversations import (
    ConversationMissing,
    Conversations,
    new_conversation_id,
)
from apps.response_api.services.ending import ResponseWriter
from apps.response_api.services.events import EventHub, EventLog, Frame, follow
from apps.response_api.services.execution import RunExecutor, ServiceConfig
from apps.response_api.services.items import normalize_input
from apps.response_api.services.llm import LlmClient
from apps.response_api.services.mcp import McpConnector
from apps.response_api.services.runs import ResponseRun, RunRegistry
from apps.response_api.services.state import ResponseState
from apps.response_api.services.store import RUNNING, ResponseStore
from apps.response_api.types import ResponseBody

log = logging.getLogger(__name__)


class ResponseService:
    def __init__(
        self,
        *,
        store: ResponseStore,
        registry: RunRegistry,
        hub: EventHub,
        llm: LlmClient,
        conversations: Conversations,
        mcp: McpConnector,
        config: ServiceConfig,
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._registry = registry
        self._hub = hub
        self._config = config
        self._writer = ResponseWriter(
            store,
            conversations,
            budget=config.storage_budget,
            background_budget=config.background_storage_budget,
        )
        self._executor = RunExecutor(llm=llm, mcp=mcp, writer=self._writer, config=config)

    async def close(self) -> None:
        """Stop what still runs in the background after its response ended (the server is stopping)."""
        await self._writer.close()

    async def create(self, request: CreateResponseRequest, principal: Principal) -> ResponseRun:
        if not self._registry.has_room():
            raise APIError(
                503,
                "Too many responses are running; retry shortly.",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )
        if request.previous_response_id and request.conversation_id:
            raise bad_request(
                "Use either 'previous_response_id' or 'conversation', not both.", param="conversation"
            )
        if request.background and not request.store:
            raise bad_request("Background responses must be stored; drop 'store: false'.", param="background")
        check_tools(request.tools)
        input_items = normalize_input(request.input)
        history: list[dict[str, Any]] = []
        conversation_id = request.conversation_id
        headers = principal.forward_headers()
        project_instructions: str | None = None
        if request.previous_response_id:
            history, conversation_id = await self._store.previous_history(
                principal.user_id, request.previous_response_id
            )
            if conversation_id:
                try:
                    project_instructions = await self._conversations.project_instructions(
                        conversation_id, headers
                    )
                except ConversationMissing:
                    conversation_id = None  # deleted since: this response starts a new one
        elif conversation_id:
            history, project_instructions = await self._conversations.history(conversation_id, headers)
        approved = approved_requests(history, input_items)
        body = initial_body(
            request, offer_mcp=self._config.offer_mcp_by_default, server_label=self._config.server_label
        )
        logged = request.background and request.stream
        new_conversation = request.store and conversation_id is None
        if request.store:
            conversation_id = conversation_id or new_conversation_id()
            body["conversation"] = {"id": conversation_id}
        # A new conversation whose id the client learns before the end (the stream's
        # `response.created`, the background 200) is made now, so a delete meanwhile finds it and
        # the ending cannot bring it back; a plain response's ending makes it (nobody knew its id).
        announced = new_conversation and (request.stream or request.background)
        made: asyncio.Task[None] | None = None
        if announced and conversation_id is not None:
            making = self._conversations.create(conversation_id, headers, budget=self._config.storage_budget)
            if request.background:
                await making  # before the insert: the row is what a poll reads
            else:
                # A foreground stream overlaps it with the run's start; its first event waits for
                # it (below), and so do its first tool call and its ending (`RunExecutor.execute`).
                made = asyncio.create_task(making, name="new conversation")
        if request.background:
            try:
                await self._writer.insert(body, input_items, principal.user_id, event_log=logged)
            except Exception:
                if announced and conversation_id is not None:  # its id is never learned: none left behind
                    await self._writer.withdraw(conversation_id, headers, key=body["id"])
                raise
        log = self._event_log(body["id"]) if logged else None
        run = ResponseRun(
            state=ResponseState(body, log),
            user_id=principal.user_id,
            background=request.background,
            request=request,
            principal=principal,
            history=history,
            new_conversation=new_conversation and not announced,
            project_instructions=project_instructions,
            input_items=input_items,
            approved=approved,
            conversation_made=made,
            listed_labels=frozenset(
                str(item.get("server_label"))
                for item in (*history, *input_items)
                if item.get("type") == "mcp_list_tools"
            ),
        )
        if request.stream:
            run.events = run.state.listen()
        self._registry.start(run, self._executor.execute)
        if made is not None:
            try:
                await asyncio.shield(made)
            except BaseException:
                # The id was not announced and nothing was sent: the run stores nothing
                # (`RunExecutor.execute`) and is gone before the client hears of the failure.
                await asyncio.shield(self._registry.cancel(run))
                raise
        return run

    def _event_log(self, response_id: str) -> EventLog:
        async def write(events: list[Frame]) -> None:
            await self._store.append_events(response_id, events)

        return EventLog(write, self._config.event_flush_seconds)

    # reads and control

    async def get(self, principal: Principal, response_id: str) -> ResponseBody:
        run = self._registry.get(principal.user_id, response_id)
        if run is not None and run.state.body["store"]:
            if not run.state.finished:
                return run.state.body  # running: a progress snapshot, which promises nothing
            # Ended in memory, maybe not stored yet: what the client reads must already be durable.
            await run.done.wait()
        return await self._store.get(principal.user_id, response_id)

    async def stream(
        self, principal: Principal, response_id: str, starting_after: int | None
    ) -> AsyncIterator[bytes]:
        """The events of a streamed background response after `starting_after`, then live to its end."""
        user_id = principal.user_id
        if not await self._store.has_event_log(user_id, response_id):
            raise bad_request(
                "Only background responses created with 'stream: true' can be streamed again; "
                "retrieve this one without 'stream'.",
                param="stream",
            )

        async def read(after: int, limit: int) -> tuple[bool, list[Frame]]:
            found = await self._store.events_after(user_id, response_id, after, limit)
            if found is None:
                return True, []  # deleted meanwhile: the stream ends
            status, frames = found
            return status not in RUNNING, frames

        after = -1 if starting_after is None else starting_after
        return follow(self._hub, response_id, after, read, quiet=self._config.follow_quiet_seconds)

    async def cancel(self, principal: Principal, response_id: str) -> ResponseBody:
        run = self._registry.get(principal.user_id, response_id)
        if run is None:
            return await self._store.mark_cancelled(principal.user_id, response_id)
        await self._registry.cancel(run)
        if run.storage_error is not None and run.state.body["store"]:
            raise run.storage_error
        return run.state.body

    def abandon(self, run: ResponseRun) -> None:
        """The streaming client left a foreground response: stop it (without waiting)."""
        self._registry.cancel_soon(run.state.id)

    async def delete(self, principal: Principal, response_id: str) -> None:
        run = self._registry.get(principal.user_id, response_id)
        if run is not None:
            await self._registry.cancel(run)
        await self._store.delete(principal.user_id, response_id)

    async def input_items(
        self, principal: Principal, response_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[dict[str, Any]], bool]:
        items = await self._store.input_items(principal.user_id, response_id)
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise APIError(400, f"No input item '{after}' in response '{response_id}'.", param="after")
            items = items[ids.index(after) + 1 :]
        return items[:limit], len(items) > limit
