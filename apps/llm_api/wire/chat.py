"""The chat completion request as we check it: OpenAI's fields we act on, everything else passed on.

Only the fields llm-api reads are typed (strictly: `"stream": "yes"` is a 400, not a guess); unknown
fields stay in the request dict and reach the upstream unchanged. Jan's extensions are `conversation`
(an id, or an object: with an `id` to continue, without one to start a new conversation) and `store`
(default true when a conversation is given).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from apps.common.errors import APIError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Role
    content: StrictStr | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: StrictStr | None = None


class ConversationRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: StrictStr | None = None
    title: StrictStr | None = Field(None, max_length=256)
    metadata: dict[str, StrictStr] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = None
    stream_options: dict[str, Any] | None = None
    conversation: StrictStr | ConversationRef | None = None
    store: StrictBool | None = None


def parse_chat_request(raw: bytes) -> tuple[dict[str, Any], ChatRequest]:
    """The request as a dict (what we forward) and its checked view; bad input is a clear 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
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
