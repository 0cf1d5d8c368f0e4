"""Wire models of the Responses API.

`CreateResponseRequest` follows OpenAI's request shape and accepts unknown fields (`extra="allow"`);
the ones we do not act on are passed through to llm-api's chat completions. Parameters that only
make sense to OpenAI's own platform (`include`, `reasoning`, `truncation`, …) are declared so that they
are accepted but not forwarded, since a chat-completions server would reject them.

Input is kept as plain JSON items (a string becomes one user message); their checks live in
`services/items.py` so that stored history and new input go through one code path.

Tools are a union discriminated by `type` (`function` or `mcp`), so a wrong tool gets an error about
that tool, not about the other kind. An `mcp` tool means this deployment's MCP tools (mcp-tools);
OpenAI's remote servers by URL (`server_url`, `connector_id`) are refused with a
400 naming the field (`check_tools`), not silently ignored. `require_approval` is honoured
(`services/approvals.py`); a malformed one is a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apps.common.errors import bad_request
from apps.common.storable import dumps


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
    connector_id: str | None = None
    allowed_tools: list[str] | dict[str, Any] | None = None
    require_approval: str | dict[str, Any] | None = None

    def allowed_names(self) -> set[str] | None:
        allowed = self.allowed_tools
        if allowed is None:
            return None
        if isinstance(allowed, dict):
            names = allowed.get("tool_names")
            return set(names) if isinstance(names, list) else None
        return set(allowed)


Tool = Annotated[FunctionTool | McpTool, Field(discriminator="type")]


def check_tools(tools: list[FunctionTool | McpTool] | None) -> None:
    """A clear 400 for what an `mcp` tool may ask here but this deployment does not do."""
    for index, tool in enumerate(tools or ()):
        if not isinstance(tool, McpTool):
            continue
        for name in ("server_url", "connector_id"):
            if getattr(tool, name) is not None:
                raise bad_request(
                    f"MCP servers by URL or connector are not supported: 'tools[{index}].{name}' must be "
                    "left out. An 'mcp' tool here offers this deployment's own MCP tools "
                    "(web search, scrape, file search, python).",
                    param=f"tools[{index}].{name}",
                    code="unsupported_parameter",
                )
        check_require_approval(tool.require_approval, f"tools[{index}].require_approval")


_FILTER_KEYS = frozenset({"tool_names", "read_only"})


def check_require_approval(value: object, param: str) -> None:
    """A clear 400 for a `require_approval` that is not one of OpenAI's shapes."""
    if value is None or value in ("always", "never"):
        return
    problem = f"'{param}' must be 'always', 'never' or an object with 'always' and/or 'never' filters."
    if not isinstance(value, dict) or not value or set(value) - {"always", "never"}:
        raise bad_request(problem, param=param)
    for key, spec in value.items():
        if spec is not None and not _is_filter(spec):
            raise bad_request(
                f"'{param}.{key}' must be an object with 'tool_names' (a list of names) and/or 'read_only'.",
                param=f"{param}.{key}",
            )


def _is_filter(spec: object) -> bool:
    if not isinstance(spec, dict) or set(spec) - _FILTER_KEYS:
        return False
    names, read_only = spec.get("tool_names"), spec.get("read_only")
    names_ok = names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names))
    return names_ok and (read_only is None or isinstance(read_only, bool))


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

    @model_validator(mode="before")
    @classmethod
    def _writable(cls, data: Any) -> Any:
        # The body is read with up to ~1000 levels of nesting, but what is stored and sent on is
        # written by orjson, which stops at 255: refused here, not failed later as a server error.
        try:
            dumps(data)
        except orjson.JSONEncodeError:
            raise ValueError("the body nests arrays or objects more than 255 levels deep") from None
        return data

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
