"""Plain answers of a model server that bend the chat completion format, with a conversation recorded:
the client gets the answer as the model gave it and the turn is stored, or the client gets a 502
envelope and nothing is stored; never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.llm_api.test_chat import stored_items


def ask(llm_api: LlmApi, token: str, answer: bytes, upstream: FakeUpstream) -> httpx.Response:
    upstream.enqueue(Reply(raw_body=answer))
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hello"}], "conversation": {}}
    with llm_api.http(token) as http:
        return http.post("/v1/chat/completions", json=body)


def completion(message: dict[str, Any]) -> bytes:
    return json.dumps({"object": "chat.completion", "choices": [{"index": 0, "message": message}]}).encode()


@pytest.mark.parametrize(
    "message",
    [{"content": "no role given"}, {"role": "a-role-of-more-than-twenty-characters", "content": "odd role"}],
    ids=["no-role", "long-role"],
)
def test_a_reply_is_stored_as_the_assistants_whatever_role_the_model_gave(
    llm_api: LlmApi, upstream: FakeUpstream, message: dict[str, Any]
) -> None:
    token = llm_api.token()
    response = ask(llm_api, token, completion(message), upstream)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"] == message  # passed on as given
    _, answer = stored_items(llm_api, token, response.json()["conversation"]["id"], 2)
    assert answer["role"] == "assistant"
    assert answer["content"][0]["text"] == message["content"]


def test_an_unpaired_surrogate_escape_is_answered_as_sent_and_stored_replaced(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    # Valid JSON (an escape may name any code unit) that orjson, strict about UTF-8, refuses.
    token = llm_api.token()
    raw = completion({"role": "assistant", "content": "x\ud800y"})
    assert b"\\ud800" in raw
    response = ask(llm_api, token, raw, upstream)
    assert response.status_code == 200, response.text
    assert json.loads(response.content)["choices"][0]["message"]["content"] == "x\ud800y"
    _, answer = stored_items(llm_api, token, response.json()["conversation"]["id"], 2)
    assert answer["content"][0]["text"] == "x\ufffdy"


def test_a_choice_that_is_not_an_object_stores_the_question_alone(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    token = llm_api.token()
    response = ask(llm_api, token, b'{"object": "chat.completion", "choices": ["not a choice"]}', upstream)
    assert response.status_code == 200, response.text
    (question,) = stored_items(llm_api, token, response.json()["conversation"]["id"], 1)
    assert question["role"] == "user"


@pytest.mark.parametrize("answer", [b"[1, 2]", b'"text"', b"{not json"], ids=["array", "string", "broken"])
def test_an_answer_that_is_not_a_json_object_is_a_502_and_stores_nothing(
    llm_api: LlmApi, upstream: FakeUpstream, answer: bytes
) -> None:
    token = llm_api.token()
    response = ask(llm_api, token, answer, upstream)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_invalid"
    with llm_api.http(token) as http:
        assert http.get("/v1/conversations").json()["data"] == []


def test_tool_calls_of_odd_shapes_are_stored_as_the_item_format_has_them(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    token = llm_api.token()
    calls: list[Any] = [
        "not a call",
        {"id": 7, "type": "function", "function": "not a function"},
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": {"q": "x"}}},
    ]
    response = ask(
        llm_api, token, completion({"role": "assistant", "content": None, "tool_calls": calls}), upstream
    )
    assert response.status_code == 200, response.text
    _, message, first, second = stored_items(llm_api, token, response.json()["conversation"]["id"], 4)
    assert message["role"] == "assistant"
    assert (first["call_id"], first["name"], first["arguments"]) == ("7", "", "")
    assert (second["call_id"], second["name"], second["arguments"]) == ("call_1", "lookup", '{"q":"x"}')
