"""Making what an upstream sent storable in Postgres, without losing it.

Postgres refuses a NUL character (U+0000) in `text` and in `jsonb` (`unsupported Unicode escape
sequence`), and a string holding an unpaired UTF-16 surrogate cannot even be encoded to send it.
What a *client* sends is checked at the door (`apps.common.guard`: a 400 naming the field). What an
*upstream* sends (a model's reply, a tool's output, an extracted document) cannot be refused that
way: the client already has it, or did nothing wrong, and in llm-api's group-committed batches one
refused value would fail the statement that holds other users' turns too. So such text is stored
with each of these characters replaced by U+FFFD, the replacement character Unicode defines for
exactly this (a lossless escape would need every reader to unescape, and these characters carry no
meaning in text anyway).

A clean value is returned as it was, not copied (see `storable` for the cost of the check).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

REPLACEMENT = "\ufffd"
# In a Python string every surrogate is unpaired: a valid pair is decoded into one code point.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The JSON escape of a UTF-16 surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def storable_text(text: str) -> str:
    """`text` with every NUL and unpaired surrogate replaced by U+FFFD (the same object if none)."""
    if "\x00" in text or (not text.isascii() and _has_surrogate(text)):
        return _UNSTORABLE.sub(REPLACEMENT, text)
    return text


def storable(value: T) -> T:
    """A JSON-like value (dicts, lists, tuples, strings, scalars) whose strings, keys included, are
    `storable_text`; the same object when nothing needed replacing.

    Checked first by serializing it: orjson escapes a NUL as `\\u0000` and refuses a surrogate,
    so a clean value costs one `orjson.dumps` and a byte search (~1 µs for a chat reply, where
    walking it in Python took ~20); only a value that fails that check is walked and copied."""
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return value
    except TypeError:  # a surrogate, or something orjson does not serialize: walk it to know
        pass
    return _storable(value)  # type: ignore[no-any-return]


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        changed = False
        result: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = storable_text(key) if isinstance(key, str) else key
            new_item = _storable(item)
            changed = changed or new_key is not key or new_item is not item
            result[new_key] = new_item
        return result if changed else value
    if isinstance(value, list | tuple):
        items = [_storable(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def loads(data: bytes | str) -> Any:
    """JSON as the standard allows it: orjson, and the standard library for the one thing valid JSON
    may hold that orjson refuses, an escape naming an unpaired surrogate (`\\ud800`) in an
    upstream's text (`storable` then replaces it). Raises `ValueError` on invalid JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if not _SURROGATE_ESCAPE.search(data if isinstance(data, bytes) else data.encode()):
            raise
        return json.loads(data)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
