"""The tool loop: model round, tool calls, results back to the model, until it answers.

Decisions:
- A round is one streamed llm-api call. If the model asks for tools, MCP tools run here (all at once
  when `parallel_tool_calls` allows, each bounded by `TOOL_EXECUTION_TIMEOUT`), their results or
  errors go back to the model as tool messages, and the next round starts. Tool errors never end
  the response: the model reads them and decides.
- A call of a client-side `function` tool ends the response (`completed`, with the `function_call`
  item); the client runs it and continues with `function_call_output` and `previous_response_id`.
- At most `MAX_TOOL_EXECUTION_DEPTH` rounds of tools run. If the model still asks for tools after
  that, the response ends `incomplete` with reason `max_tool_execution_depth`; the calls it asked
  for are listed with status `incomplete`.
- An MCP tool that needs approval (`services/approvals.py`) is not run when the model calls it: the
  call becomes an `mcp_approval_request` item and the response ends `completed` after the round's
  other calls have run. Calls approved by the request's input run before the first round.
- A tool's MCP progress notifications are relayed as `response.mcp_call.progress` events while it
  runs (see `ResponseState.call_progress`). They are asked for only when the events reach someone
  (a streaming client or the event log): a plain or unstreamed background response would drop them.
- A forced `tool_choice` (`required` or a named tool) applies to the first round only; later rounds
  use `auto`, or the model could never stop calling tools.
- No tool runs before `before_tools` returns (a streamed response's new conversation is being made
  while its first round runs: a tool's side effects must not happen for a response that can still be
  refused, unstored; `services/responses.py`). It is awaited once, before the first tool call.
- Tool executions are collected in memory (`ToolLoop.executions`) and written with the response's
  final state, in the same transaction, whatever way the response ends (completed, failed,
  cancelled, server stopping). A tool round therefore costs no database round trip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apps.response_api.db import CALL_ID_CHARS, TOOL_NAME_CHARS
from apps.response_api.schemas import CreateResponseRequest, FunctionTool, McpTool
from apps.response_api.services.approvals import needs_approval
from apps.response_api.services.items import mcp_result_text, parse_arguments
from apps.response_api.services.llm import LlmClient, RoundEnd, TextDelta, ToolCallDelta
from apps.response_api.services.mcp import McpSession, McpToolInfo, ToolAccess, ToolOutcome
from apps.response_api.services.state import ResponseState
from apps.response_api.types import CallKind, ExecutionStatus, ToolExecutionRow

DEPTH_REASON = "max_tool_execution_depth"


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int
    tool_timeout: float


@dataclass
class ToolSet:
    """The tools offered to the model this response, by name."""

    chat_tools: list[dict[str, Any]] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    mcp: set[str] = field(default_factory=set)
    # MCP tools whose calls wait for the caller's approval.
    approval: set[str] = field(default_factory=set)
    server_label: str = "jan"

    @classmethod
    def build(cls, request: CreateResponseRequest, listed: list[McpToolInfo], default_label: str) -> ToolSet:
        tools = cls(server_label=default_label)
        for tool in request.tools or ():
            if isinstance(tool, FunctionTool):
                function = {
                    "name": tool.name,
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                }
                if tool.description:
                    function["description"] = tool.description
                tools.chat_tools.append({"type": "function", "function": function})
                tools.functions.add(tool.name)
        allowed = _allowed_mcp_names(request)
        mcp_tools = [tool for tool in request.tools or () if isinstance(tool, McpTool)]
        for info in listed:
            if info.name not in tools.functions and (allowed is None or info.name in allowed):
                tools.chat_tools.append(info.chat_tool())
                tools.mcp.add(info.name)
                if needs_approval(mcp_tools, info):
                    tools.approval.add(info.name)
        if mcp_tools:
            tools.server_label = mcp_tools[0].server_label
        return tools


def _allowed_mcp_names(request: CreateResponseRequest) -> set[str] | None:
    specs = [tool for tool in request.tools or () if isinstance(tool, McpTool)]
    names = [spec.allowed_names() for spec in specs]
    if not specs or any(n is None for n in names):
        return None
    return set().union(*(n for n in names if n is not None))


@dataclass
class _Call:
    index: int
    call_id: str
    name: str
    kind: CallKind = "mcp_call"


@dataclass
class _Round:
    text: str = ""
    calls: list[_Call] = field(default_factory=list)
    finish_reason: str | None = None


class ToolLoop:
    def __init__(
        self,
        *,
        llm: LlmClient,
        headers: dict[str, str],
        limits: Limits,
        user_id: str,
        before_tools: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._llm = llm
        self._before_tools = before_tools
        self._headers = headers
        self._limits = limits
        self._user_id = user_id
        # The response's tool executions, in the order they started; read by whoever ends the
        # response, however it ends (so they are kept here, not returned).
        self.executions: list[ToolExecutionRow] = []

    async def run(
        self,
        state: ResponseState,
        request: CreateResponseRequest,
        messages: list[dict[str, Any]],
        tools: ToolSet,
        access: ToolAccess | None,
    ) -> None:
        depth = 0
        while True:
            body = chat_body(request, messages, tools, first_round=depth == 0)
            model_round = await self._model_round(state, body, tools)
            messages.append(_assistant_message(model_round, state))
            if not model_round.calls:
                reason = "max_output_tokens" if model_round.finish_reason == "length" else None
                state.finish("incomplete" if reason else "completed", reason=reason)
                return
            server_calls = [call for call in model_round.calls if call.kind == "mcp_call"]
            if server_calls and depth >= self._limits.max_depth:
                for call in server_calls:
                    state.call_skipped(call.index)
                state.finish("incomplete", reason=DEPTH_REASON)
                return
            if server_calls:
                await self._ready_for_tools()
            session = (
                await access.session() if access and any(c.name in tools.mcp for c in server_calls) else None
            )
            await self._run_tools(state, server_calls, tools, session, request.parallel_tool_calls)
            messages.extend(
                {"role": "tool", "tool_call_id": c.call_id, "content": mcp_result_text(state.output[c.index])}
                for c in server_calls
            )
            if len(server_calls) < len(model_round.calls):
                state.finish("completed")  # the client runs its function calls, or approves calls
                return
            depth += 1

    async def _model_round(self, state: ResponseState, body: dict[str, Any], tools: ToolSet) -> _Round:
        model_round = _Round()
        message: int | None = None
        calls: dict[int, _Call] = {}
        async for event in self._llm.stream(body, self._headers):
            if isinstance(event, TextDelta):
                if message is None:
                    message = state.open_message()
                state.text_delta(message, event.text)
            elif isinstance(event, ToolCallDelta):
                call = calls.get(event.index)
                if call is None:
                    call = self._open_call(state, event, tools)
                    calls[event.index] = call
                if event.arguments:
                    state.arguments_delta(call.index, event.arguments)
            elif isinstance(event, RoundEnd):
                model_round.finish_reason = event.finish_reason
                state.add_usage(event.usage)
        if message is not None:
            model_round.text = state.close_message(message)
        for call in calls.values():
            state.close_arguments(call.index)
        model_round.calls = list(calls.values())
        return model_round

    @staticmethod
    def _open_call(state: ResponseState, event: ToolCallDelta, tools: ToolSet) -> _Call:
        name = event.name or ""
        call_id = event.call_id or f"call_{event.index}_{len(state.output)}"
        kind: CallKind
        if name in tools.functions:
            kind = "function_call"
        elif name in tools.approval:
            kind = "mcp_approval_request"
        else:
            kind = "mcp_call"
        return _Call(state.open_call(kind, call_id, name, tools.server_label), call_id, name, kind)

    async def run_approved(
        self, state: ResponseState, requests: list[dict[str, Any]], tools: ToolSet, access: ToolAccess | None
    ) -> None:
        """Run the calls the caller approved (their results join the output, for the model to read)."""
        if not requests:
            return
        await self._ready_for_tools()
        calls = [_Call(state.approved_call(r), str(r["id"]), str(r["name"])) for r in requests]
        session = await access.session() if access and any(c.name in tools.mcp for c in calls) else None
        await self._run_tools(state, calls, tools, session, parallel=True)

    async def _ready_for_tools(self) -> None:
        before, self._before_tools = self._before_tools, None
        if before is not None:
            await before()  # raises if the response must stop instead

    async def _run_tools(
        self,
        state: ResponseState,
        calls: list[_Call],
        tools: ToolSet,
        session: McpSession | None,
        parallel: bool,
    ) -> None:
        if parallel:
            await asyncio.gather(*(self._run_tool(state, call, tools, session) for call in calls))
        else:
            for call in calls:
                await self._run_tool(state, call, tools, session)

    async def _run_tool(
        self,
        state: ResponseState,
        call: _Call,
        tools: ToolSet,
        session: McpSession | None,
    ) -> None:
        row = self._start_row(state, call)
        clock = time.perf_counter()
        try:
            outcome = await self._execute(state, call, state.arguments(call.index), tools, session, row)
        except asyncio.CancelledError:
            row.update(
                {"status": "cancelled", "error_message": "The response was cancelled during the call."}
            )
            raise
        else:
            state.call_finished(call.index, outcome)
            status: ExecutionStatus = "completed" if outcome.ok else "failed"
            row.update(
                {
                    "result": outcome.structured if outcome.structured is not None else outcome.output,
                    "error_message": outcome.error_message,
                    "status": status,
                }
            )
        finally:
            row["duration_ms"] = (time.perf_counter() - clock) * 1000

    def _start_row(self, state: ResponseState, call: _Call) -> ToolExecutionRow:
        state.call_started(call.index)
        row: ToolExecutionRow = {
            "response_id": state.id,
            "user_id": self._user_id,
            # The model's own words (a call to a tool that does not exist is recorded too): cut to
            # their columns rather than fail the response's one write.
            "call_id": call.call_id[:CALL_ID_CHARS],
            "tool_name": call.name[:TOOL_NAME_CHARS],
            "arguments": {},
            "result": None,
            "error_message": None,
            "status": "running",
            "execution_order": len(self.executions),
            "started_at": datetime.now(UTC),
            "duration_ms": 0.0,
        }
        self.executions.append(row)
        return row

    async def _execute(
        self,
        state: ResponseState,
        call: _Call,
        raw_arguments: str,
        tools: ToolSet,
        session: McpSession | None,
        row: ToolExecutionRow,
    ) -> ToolOutcome:
        try:
            row["arguments"] = parse_arguments(raw_arguments)
        except ValueError:
            row["arguments"] = {"unparsed": raw_arguments}
            return _failure(f"The arguments for '{call.name}' are not a JSON object.")
        if call.name not in tools.mcp or session is None:
            return _failure(f"Tool '{call.name}' is not available.")

        async def report(progress: float, total: float | None, message: str | None) -> None:
            state.call_progress(call.index, progress, total, message)

        return await session.call(
            call.name,
            row["arguments"],
            timeout=self._limits.tool_timeout,
            progress=report if state.observed else None,
        )


def _failure(message: str) -> ToolOutcome:
    return ToolOutcome(None, {"type": "mcp_protocol_error", "code": -32602, "message": message})


def _assistant_message(model_round: _Round, state: ResponseState) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": model_round.text or None}
    if model_round.calls:
        message["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": state.arguments(call.index) or "{}"},
            }
            for call in model_round.calls
        ]
    return message


def chat_body(
    request: CreateResponseRequest, messages: list[dict[str, Any]], tools: ToolSet, *, first_round: bool
) -> dict[str, Any]:
    """The chat-completions request for one round."""
    body: dict[str, Any] = {**request.passthrough(), "model": request.model, "messages": messages}
    for name, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("max_tokens", request.max_output_tokens),
        ("user", request.user),
        ("response_format", _response_format(request.text)),
    ):
        if value is not None:
            body[name] = value
    if tools.chat_tools:
        body["tools"] = tools.chat_tools
        body["parallel_tool_calls"] = request.parallel_tool_calls
        choice = _tool_choice(request.tool_choice) if first_round else None
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    name = choice.get("name")
    if isinstance(name, str):
        return {"type": "function", "function": {"name": name}}
    return "required"


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_schema":
        schema = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": fmt["type"]}
