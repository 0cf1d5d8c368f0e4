"""The shapes response-api builds and stores: the Responses API `response` object, its output items,
and the rows and states that go with them (openai-python's `types/` is the model).

TypedDicts, not models: the body is built and mutated in place as the model streams, and encoded
once per event, so its type must cost nothing at run time. (They come from `typing_extensions` so
that pydantic can read them for the OpenAPI document, `apps/response_api/openapi.py`.) Bodies read
back from the database are trusted to have the shape they were stored with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

# A response's `status`, stored beside its body (`responses.status`).
RunStatus = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
# The statuses a response can end with.
EndStatus = Literal["completed", "failed", "cancelled", "incomplete"]
# An output item's `status`: `calling` while an MCP call runs (ours; OpenAI shows `in_progress`).
ItemStatus = Literal["in_progress", "calling", "completed", "incomplete", "failed"]
# A tool execution's `status` (`tool_executions.status`).
ExecutionStatus = Literal["running", "completed", "failed", "cancelled"]
# The call items the model streams (`ResponseState.open_call`).
CallKind = Literal["function_call", "mcp_call", "mcp_approval_request"]


class ErrorBody(TypedDict):
    code: str
    message: str


class IncompleteDetails(TypedDict):
    reason: str


class InputTokensDetails(TypedDict):
    cached_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class Usage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseConversation(TypedDict):
    id: str


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class OutputMessage(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: ItemStatus
    content: list[OutputText]


class FunctionCallItem(TypedDict):
    """A call of the client's own function: the response ends, the client runs it."""

    id: str
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class McpCallError(TypedDict):
    """OpenAI's `mcp_call.error`: the tool's own error result (`content`), or a failure to run it."""

    type: Literal["mcp_tool_execution_error", "mcp_protocol_error", "http_error"]
    code: NotRequired[int]
    message: NotRequired[str]
    content: NotRequired[list[dict[str, Any]]]  # MCP content blocks


class McpCallItem(TypedDict):
    id: str
    type: Literal["mcp_call"]
    call_id: str
    name: str
    arguments: str
    server_label: str
    output: str | None
    error: McpCallError | None
    status: ItemStatus
    approval_request_id: NotRequired[str]  # when it ran because an earlier request was approved


class McpApprovalRequestItem(TypedDict):
    """A call that waits for the caller's approval: its `id` is what the approval answers."""

    id: str
    type: Literal["mcp_approval_request"]
    name: str
    arguments: str
    server_label: str


class McpListedTool(TypedDict):
    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None


class McpListToolsItem(TypedDict):
    id: str
    type: Literal["mcp_list_tools"]
    server_label: str
    tools: list[McpListedTool]
    error: dict[str, Any] | None


CallItem = FunctionCallItem | McpCallItem | McpApprovalRequestItem
OutputItem = OutputMessage | CallItem | McpListToolsItem


class ResponseBody(TypedDict):
    """The `response` object, as returned, streamed (`response.*` events) and stored (`responses.body`)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: RunStatus
    background: bool
    model: str
    instructions: str | None
    output: list[OutputItem]
    error: ErrorBody | None
    incomplete_details: IncompleteDetails | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    temperature: float | None
    top_p: float | None
    max_output_tokens: int | None
    previous_response_id: str | None
    conversation: ResponseConversation | None
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]  # as the request gave them (or the deployment's `mcp` tool)
    text: dict[str, Any]
    store: bool
    user: str | None
    usage: Usage | None
    completed_at: int | None


class ToolExecutionRow(TypedDict):
    """One MCP tool call of a response, as `tool_executions` stores it."""

    response_id: str
    user_id: str
    call_id: str
    tool_name: str
    arguments: dict[str, Any]
    result: Any
    error_message: str | None
    status: ExecutionStatus
    execution_order: int
    started_at: datetime
    duration_ms: float
