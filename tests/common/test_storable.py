"""`storable.loads` and `dumps` beside a long run of digits: exact integers, and otherwise orjson's
answers (the standard library's parser, used for such a body, takes more than orjson does)."""

from __future__ import annotations

import orjson
import pytest

from apps.common.storable import dumps, loads

DIGITS = b"12345678901234567890123"  # sends a body through the standard library's parser


@pytest.mark.parametrize("number", [-(2**63) - 1, -(10**19) + 1, 2**64, -(2**64)])
def test_an_integer_just_past_64_bits_is_read_exactly(number: int) -> None:
    """-2**63 - 1 has only nineteen digits; orjson reads it as a rounded float."""
    assert loads(b'{"n": %d}' % number) == {"n": number}
    assert dumps({"n": number}) == b'{"n":%d}' % number


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"a": "%s"}',  # a UTF-8 byte order mark
        b'{"a": "\xed\xa0\x80 %s"}',  # a surrogate encoded in the bytes, not escaped
        b'{"a": NaN, "b": "%s"}',
        b'{"a": 1e400, "b": "%s"}',
        b'{"a": -1' + b"0" * 400 + b', "b": "%s"}',  # an integer orjson reads as -infinity
        b'{"a": ' + b"[" * 5000 + b"%s" + b"]" * 5000 + b"}",  # past the interpreter's stack
    ],
    ids=["bom", "encoded_surrogate", "nan", "infinite", "infinite_integer", "deep"],
)
def test_what_orjson_refuses_is_refused_beside_a_long_digit_run(body: bytes) -> None:
    """An integer past the float range stays refused too: accepted, one of thousands of digits
    costs quadratic time to read and to write back."""
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body.replace(b"%s", b"1"))
    with pytest.raises(ValueError):
        loads(body.replace(b"%s", DIGITS))


def test_a_string_holding_a_lone_surrogate_is_refused_beside_a_long_digit_run() -> None:
    text = '{"a": "\ud800 %s"}'
    with pytest.raises(ValueError):
        loads(text % "1")
    with pytest.raises(ValueError):
        loads(text % DIGITS.decode())


def test_a_value_nested_past_orjson_s_limit_is_refused_as_orjson_refuses_it() -> None:
    """Not a RecursionError from looking for integers to write exactly: callers catch orjson's
    error (llm-api then writes a deep reply with the standard library)."""
    value: object = 1
    for _ in range(2000):
        value = [value]
    with pytest.raises(orjson.JSONEncodeError):
        dumps(value)
