"""Wire models of the Responses API.

`CreateResponseRequest` follows OpenAI's request shape and accepts unknown fields (`extra="allow"`);
the ones we do not act on are passed through to llm-api's chat completions. Parameters that only
make sense to OpenAI's own platform (`include`, `reasoning`, `truncation`, …) are declared so that they
are accepted but not forwarded, since a chat-completions server would reject them.

Input is kept as plain JSON items (a string becomes one user message); their checks live in
`services/items.py` so that stored history and new input go through one code path.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FunctionTool(BaseModel):
    """A function the client runs itself: the loop stops and returns a `function_call` item."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class McpTool(BaseModel):
    """The deployment's MCP tools (mcp-tools), run by response-api inside the loop."""

    model_config = ConfigDict(extra="allow")

    type: Literal["mcp"]
    server_label: str = "jan"
    server_url: str | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    require_approval: str | dict[str, Any] | None = None

    @field_validator("server_url")
    @classmethod
    def _no_remote_servers(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("only this deployment's MCP tools are offered; leave server_url unset")
        return value

    @field_validator("require_approval")
    @classmethod
    def _no_approvals(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value not in (None, "never"):
            raise ValueError("approvals are not supported; use 'never'")
        return value

    def allowed_names(self) -> set[str] | None:
        allowed = self.allowed_tools
        if allowed is None:
            return None
        if isinstance(allowed, dict):
            names = allowed.get("tool_names")
            return set(names) if isinstance(names, list) else None
        return set(allowed)


Tool = FunctionTool | McpTool


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str


# Accepted for compatibility with OpenAI clients, not forwarded to the model server.
NOT_FORWARDED = frozenset(
    {
        "include",
        "reasoning",
        "truncation",
        "service_tier",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "max_tool_calls",
        "stream_options",
        "context_management",
    }
)


class CreateResponseRequest(BaseModel):
    """`POST /v1/responses`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    # Checked by `normalize_input`, so that every malformed shape gets one clear message.
    input: Any = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    stream: bool = False
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    store: bool = True
    background: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    text: dict[str, Any] | None = None
    user: str | None = None

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("auto", "none", "required"):
            raise ValueError("must be 'auto', 'none', 'required' or an object naming a tool")
        if isinstance(value, dict) and not isinstance(value.get("name"), str) and value.get("type") != "mcp":
            raise ValueError("an object tool_choice must name the tool ('name')")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (
            len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())
        ):
            raise ValueError("at most 16 pairs, keys up to 64 and values up to 512 characters")
        return value

    @property
    def conversation_id(self) -> str | None:
        return self.conversation.id if isinstance(self.conversation, ConversationRef) else self.conversation

    def passthrough(self) -> dict[str, Any]:
        """Unknown request fields, forwarded to llm-api as they came."""
        extra = self.model_extra or {}
        return {key: value for key, value in extra.items() if key not in NOT_FORWARDED}


class InputItemsPage(BaseModel):
    """`GET /v1/responses/{id}/input_items`: OpenAI's cursor page."""

    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeletedResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["response"] = "response"
    deleted: bool = True
