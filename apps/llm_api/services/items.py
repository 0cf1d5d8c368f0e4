"""Conversation items in OpenAI's shape, and the conversions to and from chat messages.

Stored kinds: `message` (role + content parts `input_text` / `output_text` / `input_image` / others
kept as given), `function_call` (an assistant tool call) and `function_call_output` (a tool result).
A chat message becomes one or more items: an assistant message with tool calls is a `message` item
(possibly with no content) followed by one `function_call` item per call, so the history rebuilt
from items is exactly what the model saw.
"""

from __future__ import annotations

from typing import Any

from apps.common.storable import dumps

ItemBody = dict[str, Any]  # {"type", "role"?, …fields of that type}

_TEXT_PART = {"assistant": "output_text"}
_TEXT_TYPES = frozenset({"text", "input_text", "output_text"})


def message_to_items(message: dict[str, Any]) -> list[ItemBody]:
    role = str(message.get("role", "user"))
    if role in ("tool", "function"):
        return [
            {
                "type": "function_call_output",
                "call_id": message.get("tool_call_id") or message.get("name") or "",
                "output": content_text(message.get("content")),
            }
        ]
    items: list[ItemBody] = [
        {"type": "message", "role": role, "content": content_parts(role, message.get("content"))}
    ]
    # A client's calls passed the request's check; a model's are taken as they come, so anything
    # that is not a call is left out and every field is stored as the text the item format has.
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        items.append(
            {
                "type": "function_call",
                "call_id": _text(call.get("id")),
                "name": _text(function.get("name")),
                "arguments": _text(function.get("arguments")),
            }
        )
    return items


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else dumps(value).decode()


def content_parts(role: str, content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    text_type = _TEXT_PART.get(role, "input_text")
    if isinstance(content, str):
        return [_text_part(text_type, content)]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _TEXT_TYPES:
            parts.append(_text_part(text_type, str(part.get("text", ""))))
        elif kind == "image_url":
            image = part.get("image_url") or {}
            url = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail", "auto") if isinstance(image, dict) else "auto"
            parts.append({"type": "input_image", "image_url": url, "detail": detail})
        else:
            parts.append(dict(part))
    return parts


def _text_part(kind: str, text: str) -> dict[str, Any]:
    if kind == "output_text":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": kind, "text": text}


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def items_to_messages(items: list[ItemBody]) -> list[dict[str, Any]]:
    """Chat messages for the upstream, rebuilt from stored items in order."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = item.get("role") or "user"
            role = "system" if role == "developer" else role
            messages.append({"role": role, "content": _chat_content(role, item.get("content") or [])})
        elif kind == "function_call":
            if not messages or messages[-1]["role"] != "assistant":
                messages.append({"role": "assistant", "content": None})
            call = {
                "id": item.get("call_id", ""),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments", "")},
            }
            messages[-1].setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id", ""), "content": item.get("output", "")}
            )
    return messages


def _chat_content(role: str, parts: list[dict[str, Any]]) -> Any:
    if not parts:
        return None if role == "assistant" else ""
    if len(parts) == 1 and parts[0].get("type") in _TEXT_TYPES:  # most messages: one text part
        return str(parts[0].get("text", ""))
    if all(p.get("type") in _TEXT_TYPES for p in parts):
        return "".join(str(p.get("text", "")) for p in parts)
    chat_parts: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type")
        if kind in _TEXT_TYPES:
            chat_parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            chat_parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": part.get("image_url"), "detail": part.get("detail", "auto")},
                }
            )
        else:
            chat_parts.append(part)
    return chat_parts


def title_from(messages: list[dict[str, Any]]) -> str:
    """The first user message, trimmed to about 60 characters at a word boundary."""
    for message in messages:
        if message.get("role") == "user":
            text = " ".join(content_text(message.get("content")).split())
            if not text:
                continue
            if len(text) <= 60:
                return text
            cut = text.rfind(" ", 30, 60)
            return text[: cut if cut > 0 else 60] + "..."
    return "New conversation"
