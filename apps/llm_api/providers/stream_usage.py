"""Every stream llm-api answers ends with a usage chunk, whatever the provider sends.

llm-api always asks the provider for usage (`stream_options.include_usage`), but some servers ignore
it (llama-cpp-python's among them). The relay watches the bytes going past, without decoding them,
for two things: whether a non-null `"usage": {…}` object went by, and how many chunks carried
generated text or a piece of a tool call. When the provider reaches `data: [DONE]` without having
sent usage, llm-api puts its own usage chunk (`choices: []`, as OpenAI sends it) before that line.

The estimate, when the provider sends none (marked `"estimated": true` in the usage object):
- `completion_tokens` = the number of streamed chunks that carry generated text (non-empty
  `content` or reasoning) or a piece of a tool call. llama.cpp and vLLM send one token per chunk.
- `prompt_tokens` = ceil(characters of the prompt / 4), where the prompt is every message's text
  (string content, text parts, tool-call names and arguments) plus the JSON of `tools`. Four
  characters per token is the usual rule of thumb for English with BPE tokenizers.

Why not ask the provider's tokenizer: it would cost a second upstream request before `[DONE]`, and
servers expose it under different paths (or not at all).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from apps.common.storable import dumps

# A JSON string's own quotes are escaped, so `"usage"` followed by `:` and `{` can only be a key.
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
# A piece of generated text (non-empty content or reasoning) or of a tool call.
_GENERATED = re.compile(rb'"(?:content|reasoning_content|reasoning)"\s*:\s*"(?!")|"tool_calls"\s*:\s*\[')
_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,200})"')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,300})"')
CHARS_PER_TOKEN = 4


class UsageWatch:
    """Fed every relayed chunk; knows whether usage went by and counts the chunks that generated."""

    def __init__(self, prompt_chars: Callable[[], int]) -> None:
        self.seen = False
        self.generated = 0
        self._prompt_chars = prompt_chars
        self._partial = b""  # the unfinished last line, so nothing is matched across two network reads
        self._id: bytes | None = None
        self._model: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        lines = data[:end]
        if not lines:
            return
        if not self.seen and _USAGE.search(lines):
            self.seen = True
        self.generated += len(_GENERATED.findall(lines))
        if self._id is None and (found := _ID.search(lines)):
            self._id = found.group(1)
        if self._model is None and (found := _MODEL.search(lines)):
            self._model = found.group(1)

    def missing_usage_event(self) -> bytes:
        """The usage chunk to send before `[DONE]`, or nothing when the provider sent one."""
        if self.seen:
            return b""
        prompt = math.ceil(self._prompt_chars() / CHARS_PER_TOKEN)
        completion = self.generated
        chunk = {
            "id": (self._id or b"").decode("utf-8", "replace"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": (self._model or b"").decode("utf-8", "replace"),
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "estimated": True,
            },
        }
        self.seen = True
        return b"data: " + orjson.dumps(chunk) + b"\n\n"


def prompt_chars(messages: list[dict[str, Any]], tools: Any) -> int:
    """The characters the estimate counts for a prompt (see the module docstring)."""
    total = len(dumps(tools)) if tools else 0
    for message in messages:
        total += _text_chars(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += len(str(function.get("name") or "")) + len(str(function.get("arguments") or ""))
    return total


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0
