"""Running responses: each one is an asyncio task that this process holds by id.

The task, not the HTTP request, owns a response: a plain request waits for it, a streaming request
listens to its events, a background request returns at once and the task goes on after the client
has left. Cancelling a response cancels its task; the cancellation reaches whatever it is awaiting
(the model stream, the MCP calls in flight), the task records `cancelled` and ends.

This process only sees its own tasks. A cancel for a response held by another replica marks it
cancelled in the database and notifies every replica (`cancel_bus`), whose listener calls
`cancel_soon` here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from apps.common.auth.principal import Principal
from apps.common.errors import APIError
from apps.response_api.schemas import CreateResponseRequest
from apps.response_api.services.llm import LlmApiError
from apps.response_api.services.state import EventQueue, ResponseState

log = logging.getLogger(__name__)


@dataclass(eq=False, kw_only=True)
class ResponseRun:
    """One response this process runs: its state, what it was asked, and what its client is told."""

    state: ResponseState
    user_id: str
    background: bool
    request: CreateResponseRequest
    principal: Principal
    # Earlier items (the previous responses' chain, or the conversation) and this request's input.
    history: list[dict[str, Any]]
    # The conversation is this response's new one and its ending creates it in llm-api (False when
    # it was made at the start: `services/responses.py`).
    new_conversation: bool
    input_items: list[dict[str, Any]]
    # Approval requests of the history that this input approves: they run before the first round.
    approved: list[dict[str, Any]]
    # The instructions of the conversation's project, put before the request's own.
    project_instructions: str | None
    listed_labels: frozenset[str]
    events: EventQueue | None = None
    refused: LlmApiError | None = None
    # Set when the final state could not be stored: the client is told this instead of the response.
    storage_error: APIError | None = None
    cancel_requested: bool = False
    finishing: bool = False
    task: asyncio.Task[None] | None = None
    # A foreground stream's new conversation, being made while the run starts: its first event,
    # its first tool call and its ending wait for it (`services/responses.py`).
    conversation_made: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RunRegistry:
    """The runs this process holds, at most `max_runs` of them.

    A background run outlives its request, so admission control (`apps.common.admission`) does not
    bound them; this does: past `max_runs`, a new response is refused (503) before anything is stored.
    """

    def __init__(self, max_runs: int = 256) -> None:
        self._runs: dict[str, ResponseRun] = {}
        self.max_runs = max_runs

    def has_room(self) -> bool:
        return len(self._runs) < self.max_runs

    def start(self, run: ResponseRun, execute: Callable[[ResponseRun], Awaitable[None]]) -> None:
        self._runs[run.state.id] = run

        async def main() -> None:
            try:
                await execute(run)
            finally:
                self._runs.pop(run.state.id, None)
                run.done.set()

        run.task = asyncio.create_task(main(), name=f"response {run.state.id}")

    def get(self, user_id: str, response_id: str) -> ResponseRun | None:
        run = self._runs.get(response_id)
        return run if run is not None and run.user_id == user_id else None

    def cancel_soon(self, response_id: str) -> None:
        """Cancel a run held here, if any, without waiting (a cancel that came from another replica)."""
        run = self._runs.get(response_id)
        if run is not None:
            self._interrupt(run)

    async def cancel(self, run: ResponseRun) -> None:
        """Stop the run and wait until it has recorded its final state."""
        self._interrupt(run)
        await run.done.wait()

    @staticmethod
    def _interrupt(run: ResponseRun) -> None:
        # A run that is writing its final state is let finish: the response is over, and
        # interrupting the write would lose it.
        if run.task is not None and not run.task.done() and not run.finishing:
            run.cancel_requested = True
            run.task.cancel()

    async def shutdown(self) -> None:
        runs = list(self._runs.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        if runs:
            await asyncio.wait([r.task for r in runs if r.task is not None], timeout=10)
            log.info("stopped running responses", extra={"count": len(runs)})
