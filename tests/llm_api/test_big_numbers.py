"""Integers past the 64-bit range, which orjson rounds (reading) or refuses (writing).

An upstream's reply holding one (a usage count, a vendor field) is answered and stored with the
number exact: the client already has the reply, so its turn must not be lost to a 500. A client's
request holding one is answered (or refused with a 400), never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.llm_api.test_chat import stored_items

# Past both the signed and the unsigned 64-bit range, and not a float exactly (2**70 would be).
BIG = 2**70 + 1


def _completion(content: str) -> bytes:
    completion = {
        "id": "chatcmpl-big",
        "object": "chat.completion",
        "created": 1,
        "model": FAKE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "vendor": BIG,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": BIG, "total_tokens": BIG},
    }
    return json.dumps(completion).encode()  # escapes an unpaired surrogate as `\ud800`


@pytest.mark.parametrize("content", ["fine", "odd \ud800 text"], ids=["clean", "surrogate"])
@pytest.mark.parametrize("stored", [False, True], ids=["unstored", "stored"])
def test_a_plain_reply_holding_a_huge_integer_is_answered_and_stored_exactly(
    llm_api: LlmApi, upstream: FakeUpstream, content: str, stored: bool
) -> None:
    """The surrogate makes the reply go through the standard library's parser, which reads the
    number as an `int` (orjson then refused to write it: a 500, the turn lost)."""
    upstream.enqueue(Reply(raw_body=_completion(content)))
    token = llm_api.token()
    body: dict[str, Any] = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "count"}]}
    if stored:
        body["conversation"] = {}
    with llm_api.http(token) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["usage"]["total_tokens"] == BIG
    assert answer["choices"][0]["vendor"] == BIG
    if stored:
        _, item = stored_items(llm_api, token, answer["conversation"]["id"], 2)
        assert item["usage"] == {"prompt_tokens": 1, "completion_tokens": BIG, "total_tokens": BIG}


def test_a_streamed_reply_holding_a_huge_integer_is_stored_exactly(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        Reply(content="fine", usage={"prompt_tokens": 1, "completion_tokens": BIG, "total_tokens": BIG})
    )
    token = llm_api.token()
    chunks = list(
        llm_api.client(token).chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            extra_body={"conversation": {}},
        )
    )
    usage = [chunk.usage for chunk in chunks if chunk.usage]
    assert usage and usage[-1].total_tokens == BIG
    conversation = next(
        (c.model_extra or {})["conversation"] for c in chunks if (c.model_extra or {}).get("conversation")
    )
    _, item = stored_items(llm_api, token, conversation["id"], 2)
    assert item["usage"] == {"prompt_tokens": 1, "completion_tokens": BIG, "total_tokens": BIG}


@pytest.mark.parametrize(
    "field",
    [
        {"max_tokens": BIG},
        {"max_completion_tokens": BIG},
        {"seed": BIG},
        {"n": BIG},
        {"logit_bias": {"50256": BIG}},
        {"metadata": {"k": BIG}},
        {"top_logprobs": BIG},
        {"vendor_knob": {"nested": [BIG, -BIG]}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"maximum": BIG}}}]},
    ],
    ids=lambda field: next(iter(field)),
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_request_holding_a_huge_integer_is_answered_or_refused_never_a_500(
    llm_api: LlmApi, upstream: FakeUpstream, field: dict[str, Any], stream: bool
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "call it", "vendor": BIG},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": f'{{"n": {BIG}}}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": str(BIG)},
    ]
    body = {"model": FAKE_MODEL, "messages": messages, "conversation": {}, "stream": stream, **field}
    token = llm_api.token()
    with llm_api.http(token) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        return
    sent = json.loads(upstream.raw_requests[-1])  # orjson, as the fake reads it, would round them
    assert sent["messages"][0]["vendor"] == BIG  # passed through unharmed
    for key, value in field.items():
        assert sent[key] == value


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": {"k": BIG}},
        {
            "items": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi", "n": BIG}],
                }
            ]
        },
        {"items": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"n": BIG}}]},
    ],
    ids=["metadata", "content_part", "arguments"],
)
def test_a_conversation_created_with_a_huge_integer_is_stored_or_refused_never_a_500(
    llm_api: LlmApi, body: dict[str, Any]
) -> None:
    token = llm_api.token()
    with llm_api.http(token) as http:
        response = http.post("/v1/conversations", json=body)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
            return
        items = http.get(f"/v1/conversations/{response.json()['id']}/items")
        assert items.status_code == 200, items.text
        if "arguments" in str(body):  # kept (a content part's unknown field is dropped, whatever it holds)
            assert json.loads(items.json()["data"][0]["arguments"]) == {"n": BIG}


def test_a_tool_call_whose_arguments_are_an_object_with_a_huge_integer_is_stored_exactly(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    """Some servers send a tool call's arguments as an object, not its JSON text: stored as text."""
    call = {"id": "call_big", "type": "function", "function": {"name": "f", "arguments": {"n": BIG}}}
    completion = {
        "id": "chatcmpl-big",
        "object": "chat.completion",
        "created": 1,
        "model": FAKE_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
    }
    upstream.enqueue(Reply(raw_body=json.dumps(completion).encode()))
    token = llm_api.token()
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "call"}], "conversation": {}}
    with llm_api.http(token) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == {"n": BIG}
    *_, item = stored_items(llm_api, token, response.json()["conversation"]["id"], 3)
    assert item["type"] == "function_call" and json.loads(item["arguments"]) == {"n": BIG}


def test_a_huge_integer_in_a_stored_turn_is_replayed_exactly(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    """The history read back for the next turn keeps the number as stored (orjson read it rounded)."""
    token = llm_api.token()
    parts = [{"type": "text", "text": "remember"}, {"type": "x_vendor", "value": BIG}]
    first = [{"role": "user", "content": parts}]
    with llm_api.http(token) as http:
        created = http.post(
            "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": first, "conversation": {}}
        )
        assert created.status_code == 200, created.text
        conversation = created.json()["conversation"]["id"]
        then = [{"role": "user", "content": "recall"}]
        continued = http.post(
            "/v1/chat/completions", json={"model": FAKE_MODEL, "messages": then, "conversation": conversation}
        )
    assert continued.status_code == 200, continued.text
    replayed = json.loads(upstream.raw_requests[-1])["messages"]
    assert replayed[0] == {"role": "user", "content": parts}


def test_a_request_with_an_encoded_surrogate_beside_a_long_digit_run_is_a_400(llm_api: LlmApi) -> None:
    """The digits sent the body through the standard library's parser, which decoded the surrogate
    (orjson refuses those bytes as invalid UTF-8): the write of the upstream body then failed, a 500.
    The guard now finds it first (`apps.common.storable.loads` refuses it too: test_storable)."""
    content = b"odd \xed\xa0\x80 text, 123456789012345678901234"
    raw = b'{"model": "%s", "messages": [{"role": "user", "content": "%s"}]}' % (FAKE_MODEL.encode(), content)
    with llm_api.http(llm_api.token()) as http:
        response = http.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages.0.content"


def test_a_negative_integer_just_past_64_bits_is_forwarded_exactly(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    """-2**63 - 1 has nineteen digits, fewer than any positive integer past the range."""
    low = -(2**63) - 1
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "vendor_knob": low}
    with llm_api.http(llm_api.token()) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert json.loads(upstream.raw_requests[-1])["vendor_knob"] == low
