"""A response's run, from its start to its stored ending: the body of its task (`RunRegistry`).

It lists the MCP tools (from the catalog cache; mcp-tools being away fails the response only if the
request named them), runs the approved calls and then the tool loop, and turns every way a run can
end (deadline, cancel, server stop, tools or model failing) into the response's final state, which
`ResponseWriter.finish` stores before the client is told. The decisions are those of
`services/responses.py`, which creates the run.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

from apps.response_api.schemas import CreateResponseRequest, McpTool
from apps.response_api.services.body import error_body
from apps.response_api.services.conversations import with_project_instructions
from apps.response_api.services.ending import ResponseWriter
from apps.response_api.services.items import to_messages
from apps.response_api.services.llm import LlmApiError, LlmClient
from apps.response_api.services.loop import Limits, ToolLoop, ToolSet
from apps.response_api.services.mcp import McpConnector, McpToolInfo, McpUnavailable, ToolAccess, ToolCatalog
from apps.response_api.services.runs import ResponseRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    limits: Limits
    deadline: float
    offer_mcp_by_default: bool
    server_label: str
    tools_cache_seconds: float
    storage_budget: float = 10.0
    background_storage_budget: float = 120.0
    event_flush_seconds: float = 0.05
    follow_quiet_seconds: float = 10.0


class _NotAnnounced(Exception):
    """A foreground stream's new conversation could not be made: the response stops unannounced."""


class ToolsUnavailable(Exception):
    """The request names MCP tools and mcp-tools could not list them: the response fails (502)."""


class RunExecutor:
    def __init__(
        self, *, llm: LlmClient, mcp: McpConnector, writer: ResponseWriter, config: ServiceConfig
    ) -> None:
        self._llm = llm
        self._mcp = mcp
        self._writer = writer
        self._config = config
        self._catalog = ToolCatalog(config.tools_cache_seconds)

    async def execute(self, run: ResponseRun) -> None:
        """The body of a run's task: list tools, run the loop, end it, store it (`ResponseWriter.finish`)."""
        state, request = run.state, run.request
        headers = run.principal.forward_headers()

        async def announced() -> None:
            if not await conversation_made(run):
                raise _NotAnnounced

        loop = ToolLoop(
            llm=self._llm,
            headers=headers,
            limits=self._config.limits,
            user_id=run.user_id,
            before_tools=announced if run.conversation_made is not None else None,
        )
        try:
            async with asyncio.timeout(self._config.deadline), AsyncExitStack() as stack:
                state.start()
                access, listed = await self._open_tools(stack, request, headers)
                tools = ToolSet.build(request, listed, self._config.server_label)
                if _names_mcp(request) and tools.server_label not in run.listed_labels:
                    state.list_tools(tools.server_label, [i.listed() for i in listed if i.name in tools.mcp])
                await loop.run_approved(state, run.approved, tools, access)
                # A response replays as its input then its output: the approved calls come after the input.
                items = [*run.history, *run.input_items, *state.output]
                messages = with_project_instructions(
                    to_messages(items, request.instructions), run.project_instructions
                )
                await loop.run(state, request, messages, tools, access)
        except asyncio.CancelledError:
            if not state.finished:  # a cancel that lands while the MCP session closes changes nothing
                state.cancel()
                if not run.cancel_requested:
                    message = "The server stopped during the response."
                    state.finish("failed", error=error_body("server_error", message))
            if not run.cancel_requested:  # the server is stopping
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        except TimeoutError:
            state.finish(
                "failed", error=error_body("timeout", "The response did not finish within its deadline.")
            )
        except McpUnavailable:
            message = "The MCP tools could not be reached during the response."
            for row in loop.executions:  # the calls in flight went down with the session
                if row["status"] in ("running", "cancelled"):
                    row.update({"status": "failed", "error_message": message})
            state.fail_open_calls({"type": "http_error", "code": 502, "message": message})
            state.finish("failed", error=error_body("tools_unavailable", message))
        except _NotAnnounced:
            # `create` is cancelling this run and answers the client 503; nothing is stored.
            message = "The response's conversation could not be made."
            state.finish("failed", error=error_body("storage_unavailable", message))
        except ToolsUnavailable:
            message = "The MCP tools could not be listed."
            state.finish("failed", error=error_body("tools_unavailable", message))
        except LlmApiError as exc:
            if 400 <= exc.status < 500 and not state.output:
                run.refused = exc
            state.finish("failed", error=error_body(exc.code or "model_error", exc.message))
        except Exception:
            log.exception("response failed", extra={"response_id": state.id})
            state.finish("failed", error=error_body("server_error", "The response failed on the server."))
        finally:
            run.finishing = True  # from here on, cancels wait instead of interrupting the write
            if await conversation_made(run):
                await self._writer.finish(run, loop.executions)
            else:
                run.state.close_stream()
                # None ran (`before_tools`), unless that gate has a hole: a tool's side effect is
                # recorded even for a response that is not.
                await self._writer.record_executions(state.id, loop.executions)

    async def _open_tools(
        self, stack: AsyncExitStack, request: CreateResponseRequest, headers: dict[str, str]
    ) -> tuple[ToolAccess | None, list[McpToolInfo]]:
        explicit = _names_mcp(request)
        if not explicit and (request.tools or not self._config.offer_mcp_by_default):
            return None, []
        access = ToolAccess(self._mcp, self._catalog, headers, stack)
        try:
            return access, await access.list_tools()
        except Exception as exc:
            if explicit:
                raise ToolsUnavailable(repr(exc)) from exc
            log.warning("MCP tools unavailable; answering without them", extra={"error": repr(exc)})
            return None, []


async def conversation_made(run: ResponseRun) -> bool:
    """Whether the response's new conversation, made while the run starts, exists (True when it
    was made before the run). If not, the response was never announced: nothing is stored."""
    made = run.conversation_made
    if made is None:
        return True
    await asyncio.wait([made])  # not cancelled with its waiter: `create` also waits for it
    return not made.cancelled() and made.exception() is None


def _names_mcp(request: CreateResponseRequest) -> bool:
    return any(isinstance(tool, McpTool) for tool in request.tools or ())
