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

Integers past the 64-bit range are the other thing valid JSON may hold that orjson does not take:
it reads one as a rounded float, and refuses to write one (a `TypeError`, a 500 where a stored turn
was being written). An upstream may send one anywhere (a usage count, a vendor field, a tool's
structured output), and JSONB numbers are arbitrary precision, so the number is kept exactly:
`loads` reads it as the `int` it is, and `dumps` writes it digit for digit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeVar

import orjson

T = TypeVar("T")

REPLACEMENT = "\ufffd"
# In a Python string every surrogate is unpaired: a valid pair is decoded into one code point.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The JSON escape of a UTF-16 surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# What orjson writes as it is; past it, an integer is written from its digits (`dumps`).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# An integer past that range has at least 20 digits (2**64 is 18446744073709551616), or is negative
# with at least 19 (-2**63 - 1 is -9223372036854775809). Found by mapping every digit to "0" and
# searching for those runs: ~1 ns a byte, where a regex for twenty digits took ~15. A body without
# a run of nineteen (nearly all) is searched once.
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_NINETEEN_DIGITS = b"0" * 19
_TWENTY_DIGITS = b"0" * 20
_MINUS_NINETEEN_DIGITS = b"-" + _NINETEEN_DIGITS
# An integer literal that reads as a float this large or more is infinity; none has more digits.
_FLOAT_BOUND = 2**1024 - 2**970
_FLOAT_DIGITS = len(str(-_FLOAT_BOUND))


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
    """JSON as the standard allows it: orjson, and the standard library for what valid JSON may hold
    that orjson refuses or rounds: an escape naming an unpaired surrogate (`\\ud800`) in an
    upstream's text (`storable` then replaces it), and an integer past the 64-bit range (read
    exactly; `dumps` writes it back). Raises `ValueError` on invalid JSON."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    digits = raw.translate(_DIGITS_TO_ZERO)
    if _NINETEEN_DIGITS in digits and (_TWENTY_DIGITS in digits or _MINUS_NINETEEN_DIGITS in digits):
        return _standard_loads(raw)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if not _SURROGATE_ESCAPE.search(raw):
            raise
        return _standard_loads(raw)


def dumps(value: Any) -> bytes:
    """`orjson.dumps(value)`, except that an integer past the 64-bit range is written exactly (orjson
    refuses it); free for a value without one. Anything else orjson refuses still raises."""
    try:
        return orjson.dumps(value)
    except TypeError as refused:
        try:
            exact = _exact_ints(value)
        except RecursionError:  # nested deeper than orjson writes: its own refusal, as before
            raise refused from None
        if exact is value:
            raise
        return orjson.dumps(exact)


def _exact_ints(value: Any) -> Any:
    """`value` with every integer orjson cannot write replaced by its digits as a JSON fragment;
    the same object when it has none."""
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        items = {key: _exact_ints(item) for key, item in value.items()}
        return items if any(items[key] is not item for key, item in value.items()) else value
    if isinstance(value, list | tuple):
        converted = [_exact_ints(item) for item in value]
        return converted if any(new is not old for new, old in zip(converted, value, strict=True)) else value
    return value


def _standard_loads(raw: bytes) -> Any:
    # Refuses what orjson refuses and the standard library would read: NaN, Infinity, a number too
    # large for a float (`1e400`, read as infinity), a UTF-8 byte order mark and an encoded surrogate
    # (`json.loads` of bytes takes both: that surrogate then failed a write, a 500 for a client's
    # body). Nesting too deep for the interpreter's stack is invalid JSON too, not a RecursionError.
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_not_a_number, parse_float=_finite, parse_int=_within_floats
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _within_floats(text: str) -> int:
    # orjson refuses an integer past the largest float (it reads big integers as floats: infinity);
    # kept refused, which also bounds the cost of a body holding many long ones (converting digits
    # to an `int` and back is quadratic in their count: ~50 ms a MB for integers of 4300 digits).
    if len(text) <= _FLOAT_DIGITS:
        number = int(text)
        if -_FLOAT_BOUND < number < _FLOAT_BOUND:
            return number
    raise ValueError(f"{text[:20]}… is too large for a float")


def _finite(text: str) -> float:
    number = float(text)
    if number in (math.inf, -math.inf):
        raise ValueError(f"{text} is too large for a float")
    return number


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
