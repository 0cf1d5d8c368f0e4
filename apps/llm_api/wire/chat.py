"""The chat completion request as we check it: OpenAI's known fields typed, everything else passed on.

Every field of OpenAI's chat completion request is type- and range-checked here (strictly:
`"stream": "yes"` or `"temperature": "hot"` is a 400 naming the field, not a guess and not a model
server's 500), so a bad value never reaches the provider. Unknown fields stay in the request dict
and reach the upstream unchanged (providers have their own extensions). Jan's extensions are
`conversation` (an id, or an object: with an `id` to continue, without one to start a new
conversation) and `store` (default true when a conversation is given).

`n` above 1 is refused: a conversation turn stores one answer, and the local model server silently
ignores `n`, so honouring it would depend on the provider; one request per answer works everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from apps.common.errors import APIError
from apps.common.storable import loads

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: StrictStr
    arguments: StrictStr


class ToolCall(BaseModel):
    """A call an earlier assistant message made, as the client replays it."""

    model_config = ConfigDict(extra="allow")

    id: StrictStr
    type: StrictStr = "function"
    function: CalledFunction


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: StrictStr | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    title: StrictStr | None = Field(None, max_length=256)
    metadata: dict[str, StrictStr] | None = None
    project_id: StrictStr | None = Field(None, max_length=64)  # a new conversation's project


class _Open(BaseModel):
    """An OpenAI object whose known fields are checked and whose newer fields pass through."""

    model_config = ConfigDict(extra="allow")


class FunctionDefinition(_Open):
    name: StrictStr = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(_Open):
    type: Literal["function", "custom"] = "function"
    function: FunctionDefinition | None = None
    custom: dict[str, Any] | None = None


class NamedFunction(_Open):
    name: StrictStr = Field(min_length=1)


class NamedToolChoice(_Open):
    type: Literal["function", "custom", "allowed_tools"]
    function: NamedFunction | None = None


class JsonSchemaFormat(_Open):
    name: StrictStr = Field(min_length=1, max_length=64)
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


Number = StrictInt | StrictFloat
PositiveTokens = Annotated[StrictInt, Field(ge=1)]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    conversation: StrictStr | ConversationRef | None = None
    store: StrictBool | None = None
    # OpenAI's sampling and output controls.
    temperature: Annotated[Number, Field(ge=0, le=2)] | None = None
    top_p: Annotated[Number, Field(ge=0, le=1)] | None = None
    n: Annotated[StrictInt, Field(ge=1)] | None = None
    max_tokens: PositiveTokens | None = None
    max_completion_tokens: PositiveTokens | None = None
    presence_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[Number, Field(ge=-2, le=2)] | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(max_length=4)] | None = None
    seed: StrictInt | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[Number, Field(ge=-100, le=100)]] | None = None
    user: StrictStr | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    response_format: ResponseFormat | None = None
    metadata: dict[str, StrictStr] | None = None
    modalities: list[StrictStr] | None = None
    reasoning_effort: StrictStr | None = None
    service_tier: StrictStr | None = None
    verbosity: StrictStr | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: StrictStr | None = None
    safety_identifier: StrictStr | None = None

    @field_validator("stream_options")
    @classmethod
    def _stream_options(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("include_usage", False), bool):
            raise ValueError("'include_usage' must be a boolean")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value > 1:
            raise ValueError("only n=1 is supported; send one request per answer you need")
        return value


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatRequest]:
    """The request as a dict (what we forward) and its checked view; bad input is a clear 400."""
    try:
        body = loads(raw)  # an integer past 64 bits exactly, forwarded as it came (`storable.dumps`)
    except ValueError:
        raise APIError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return body, ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> APIError:
    error = exc.errors()[0]
    param = ".".join(str(part) for part in error["loc"] if not _is_type_tag(part)) or None
    if error["type"] == "missing":
        return APIError(
            400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
        )
    return APIError(400, f"Invalid value for '{param}': {error['msg']}.", param=param, code="invalid_value")


def _is_type_tag(part: int | str) -> bool:
    """Union members show up in error locations (`content.str`); they mean nothing to a caller."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper() or part in _TYPE_TAGS)


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})
