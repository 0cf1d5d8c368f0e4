"""Scripted model replies for response-api tests."""

from __future__ import annotations

from typing import Any

import orjson

from tests.harness.upstream import Reply


def call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    """One tool call as a chat-completions model emits it."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def tool_round(*calls: dict[str, Any]) -> Reply:
    return Reply(content="", tool_calls=list(calls))


def answer(text: str) -> Reply:
    return Reply(content=text)
