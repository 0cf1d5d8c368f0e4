"""Items: OpenAI's Responses input/output items, and their translation to chat-completions messages.

Input is normalised once (`normalize_input`): each item gets an id and a `type`, so stored input and
history replay read the same shape. A conversation's history is a flat list of items (inputs and
outputs of earlier responses); `to_messages` turns any such list into chat messages:

- `message` items become role/content messages (`input_text` → text part, `input_image` → image part);
- call items join the assistant message before them (its text, or earlier calls) until a result has
  been given; an `mcp_call` carries its own result, a `function_call` gets its result from a later
  `function_call_output` item. A call after answered calls starts a new assistant message, so the
  tool messages always follow the assistant message that asked for them, as chat servers require.
  (Items do not record which model round they came from; splitting a parallel round into
  call/result pairs is still a valid history.)
- an `mcp_approval_request` gives no message by itself: approved, its call comes later as an
  `mcp_call` item; refused, the `mcp_approval_response` that refuses it becomes the call and a tool
  message saying it was refused (`services/approvals.py`);
- `mcp_list_tools` items (and any other kind a conversation may hold that a chat model has no
  message for) are kept in the history but give no message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apps.common.errors import bad_request
from apps.common.ids import random_id
from apps.common.storable import loads, storable
from apps.response_api.types import ItemStatus, OutputMessage, OutputText

MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


def normalize_input(raw: Any) -> list[dict[str, Any]]:
    """The request's input as typed items with ids; a clear 400 for anything we cannot use."""
    if isinstance(raw, str) and raw:
        return [_message("user", [{"type": "input_text", "text": raw}])]
    if not isinstance(raw, list) or not raw:
        raise bad_request("'input' must be a non-empty string or list of items.", param="input")
    return [_normalize_item(item, index) for index, item in enumerate(raw)]


def _normalize_item(item: Any, index: int) -> dict[str, Any]:
    param = f"input[{index}]"
    if not isinstance(item, dict):
        raise bad_request(f"'{param}' must be an object.", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise bad_request(
                f"'{param}.role' must be one of {sorted(MESSAGE_ROLES)}.", param=f"{param}.role"
            )
        return _message(role, _content_parts(item.get("content"), role, param))
    if kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str | list):
            raise bad_request(f"'{param}' needs a string 'call_id' and an 'output'.", param=param)
        text = output if isinstance(output, str) else _parts_text(output)
        return {"id": item.get("id") or random_id("fco"), "type": kind, "call_id": call_id, "output": text}
    if kind in ("function_call", "mcp_call"):
        if not isinstance(item.get("name"), str) or not isinstance(item.get("arguments", ""), str):
            raise bad_request(f"'{param}' needs a string 'name' and 'arguments'.", param=param)
        call = {**item, "id": item.get("id") or random_id("fc")}
        call.setdefault("call_id", call["id"])
        if kind == "mcp_call" and not isinstance(call.get("server_label"), str):
            raise bad_request(f"'{param}' needs a string 'server_label'.", param=param)
        return call
    if kind == "mcp_list_tools":
        # What a client sends back from an earlier response's output: kept, so the tools are not
        # listed again in this response.
        if not isinstance(item.get("server_label"), str) or not isinstance(item.get("tools"), list):
            raise bad_request(f"'{param}' needs a string 'server_label' and a list of 'tools'.", param=param)
        return {**item, "id": item.get("id") or random_id("mcpl")}
    if kind == "mcp_approval_response":
        if not isinstance(item.get("approval_request_id"), str) or not isinstance(item.get("approve"), bool):
            raise bad_request(
                f"'{param}' needs a string 'approval_request_id' and a boolean 'approve'.", param=param
            )
        reason = item.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise bad_request(f"'{param}.reason' must be a string.", param=f"{param}.reason")
        answer = {key: item[key] for key in ("approval_request_id", "approve", "reason") if key in item}
        return {"id": item.get("id") or random_id("mcpa"), "type": kind, **answer}
    if kind == "mcp_approval_request":
        # An earlier output sent back as input (stateless clients replay the whole history).
        if not all(isinstance(item.get(key), str) for key in ("id", "name", "arguments", "server_label")):
            raise bad_request(
                f"'{param}' needs string 'id', 'name', 'arguments' and 'server_label'.", param=param
            )
        return {key: item[key] for key in ("id", "type", "name", "arguments", "server_label")}
    raise bad_request(f"'{param}.type' {kind!r} is not supported.", param=f"{param}.type")


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": random_id("msg"),
        "type": "message",
        "role": role,
        "status": "completed",
        "content": content,
    }


def _content_parts(content: Any, role: str, param: str) -> list[dict[str, Any]]:
    text_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        return [{"type": text_type, "text": content}]
    if not isinstance(content, list) or not content:
        raise bad_request(f"'{param}.content' must be a string or a list of parts.", param=f"{param}.content")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({**part, "type": text_type})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append(part)
        else:
            raise bad_request(
                f"'{param}.content' has an unsupported part {kind!r}.", param=f"{param}.content"
            )
    return parts


def _parts_text(parts: list[Any]) -> str:
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def to_messages(items: Sequence[Mapping[str, Any]], instructions: str | None) -> list[dict[str, Any]]:
    """Chat-completions messages for a history of items, `instructions` first as the system message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    assistant: dict[str, Any] | None = None
    results: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal assistant
        if assistant is not None:
            messages.append(assistant)
            assistant = None
        messages.extend(results)
        results.clear()

    requests: dict[str, Mapping[str, Any]] = {}
    for item in items:
        kind = item["type"]
        if kind == "mcp_approval_request":
            requests[str(item["id"])] = item
        elif kind == "mcp_approval_response" and not item["approve"]:
            request = requests.get(str(item["approval_request_id"]))
            if request is not None:
                if assistant is None or results:
                    flush()
                    assistant = {"role": "assistant", "content": None}
                assistant.setdefault("tool_calls", []).append(_tool_call(request))
                results.append(_tool_message(_call_id(request), refusal_text(item)))
        elif kind in ("function_call", "mcp_call"):
            if assistant is None or results:  # a call after answered calls starts a new turn
                flush()
                assistant = {"role": "assistant", "content": None}
            assistant.setdefault("tool_calls", []).append(_tool_call(item))
            if kind == "mcp_call":
                results.append(_tool_message(_call_id(item), mcp_result_text(item)))
        elif kind == "function_call_output":
            results.append(_tool_message(item["call_id"], item["output"]))
        elif kind == "message":
            flush()
            message = _chat_message(item)
            if message["role"] == "assistant":
                assistant = message
            else:
                messages.append(message)
    flush()
    return messages


def _tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    function = {"name": item["name"], "arguments": item.get("arguments") or "{}"}
    return {"id": _call_id(item), "type": "function", "function": function}


def _call_id(item: Mapping[str, Any]) -> str:
    """OpenAI's `mcp_call` items have only an `id`; ours also keep the model's `call_id`."""
    return str(item.get("call_id") or item["id"])


def _tool_message(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _chat_message(item: Mapping[str, Any]) -> dict[str, Any]:
    role = "system" if item["role"] == "developer" else item["role"]
    parts = item["content"]
    if all(part["type"] != "input_image" for part in parts):
        return {"role": role, "content": _parts_text(parts)}
    content = [
        {"type": "image_url", "image_url": {"url": part["image_url"]}}
        if part["type"] == "input_image"
        else {"type": "text", "text": part["text"]}
        for part in parts
    ]
    return {"role": role, "content": content}


def refusal_text(answer: Mapping[str, Any]) -> str:
    """What the model reads for a call the user refused to approve."""
    reason = answer.get("reason")
    return "The user did not approve this tool call" + (f": {reason}" if reason else ".")


def mcp_result_text(item: Mapping[str, Any]) -> str:
    """What the model reads back from an MCP call: its output, or its error."""
    if item.get("output") is not None:
        return str(item["output"])
    error = item.get("error") or {}
    if error.get("type") == "mcp_tool_execution_error":
        return f"Tool error: {_parts_text(error.get('content') or [])}"
    return f"Tool error: {error.get('message', 'the tool call failed')}"


def output_message(text: str, *, item_id: str, status: ItemStatus = "completed") -> OutputMessage:
    content: list[OutputText] = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Tool arguments as an object; models sometimes send a JSON string holding the JSON."""
    # Read exactly: an integer past 64 bits the model wrote reaches the tool as it wrote it.
    value: Any = loads(arguments or "{}")
    if isinstance(value, str):
        value = loads(value)
    if not isinstance(value, dict):
        raise ValueError("tool arguments must be a JSON object")
    # Stored with the tool's execution and passed to the tool: a NUL the model escaped into its
    # arguments is replaced there too (`apps.common.storable`), as in its other text.
    return storable(value)
