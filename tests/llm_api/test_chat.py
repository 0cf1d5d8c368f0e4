"""Chat completions through llm-api with the official openai client: plain, streamed, persisted."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import CLIENT_TIMEOUT, eventually

TOOL_CALL: dict[str, Any] = {
    "id": "call_abc123",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Hanoi", "unit": "celsius"}'},
}


def stored_items(api: LlmApi, token: str, conversation_id: str, count: int) -> list[dict[str, Any]]:
    """The conversation's items, oldest first, once `count` of them are stored."""
    items: list[dict[str, Any]] = eventually(
        lambda: (found := items_of(api, token, conversation_id)) and len(found) == count and found
    )
    return items


def items_of(api: LlmApi, token: str, conversation_id: str) -> list[dict[str, Any]]:
    with api.http(token) as http:
        response = http.get(f"/v1/conversations/{conversation_id}/items", params={"order": "asc"})
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data


def test_plain_completion_passes_unknown_fields_through(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    completion = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "hello there"}],
        temperature=0.2,
        extra_body={"top_k": 5, "vendor_knob": {"nested": [1, 2]}},
    )
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = upstream.requests[-1]
    assert sent["model"] == "fake-model"
    assert sent["top_k"] == 5 and sent["vendor_knob"] == {"nested": [1, 2]} and sent["temperature"] == 0.2
    assert "conversation" not in sent and "store" not in sent


def test_streamed_completion_forces_usage_upstream(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["Hel", "lo", ", wor", "ld"]))
    stream = llm_api.client().chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, world"
    assert upstream.requests[-1]["stream_options"] == {"include_usage": True}
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert all(c.id.startswith("chatcmpl-") for c in chunks)


def test_tool_call_chunks_are_relayed_intact(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content="", tool_calls=[TOOL_CALL]))
    stream = llm_api.client().chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert calls == {
        0: {"id": "call_abc123", "name": "get_weather", "arguments": TOOL_CALL["function"]["arguments"]}
    }
    assert finish == "tool_calls"
    assert upstream.requests[-1]["tools"][0]["function"]["name"] == "get_weather"


def test_stream_bytes_are_the_upstream_bytes(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    """Without a conversation, what the client reads is exactly what the upstream wrote."""
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}
    upstream.enqueue(Reply(content=["a", "b"]))
    with llm_api.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        relayed = b"".join(response.iter_raw())
    upstream.enqueue(Reply(content=["a", "b"]))
    direct_body = {**body, "model": "fake-model", "stream_options": {"include_usage": True}}
    direct = httpx.post(
        f"{upstream.base_url}/chat/completions", json=direct_body, timeout=CLIENT_TIMEOUT
    ).content
    assert _normalised(relayed) == _normalised(direct)
    assert relayed.endswith(b"data: [DONE]\n\n")


def test_conversation_continuity_and_stored_usage(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    token = llm_api.token()
    client = llm_api.client(token)
    upstream.enqueue(
        Reply(
            content="Nice to meet you, Ada.",
            usage={"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17},
        )
    )
    first = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "My name is Ada."}],
        extra_body={"conversation": {"metadata": {"topic": "intro"}}},
    )
    conversation = (first.model_extra or {})["conversation"]
    assert conversation["id"].startswith("conv_") and conversation["title"] == "My name is Ada."
    items = stored_items(llm_api, token, conversation["id"], 2)
    user, assistant = items
    assert user["role"] == "user" and user["content"] == [{"type": "input_text", "text": "My name is Ada."}]
    assert assistant["role"] == "assistant" and assistant["status"] == "completed"
    assert assistant["content"][0]["text"] == "Nice to meet you, Ada."
    assert assistant["usage"] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    assert assistant["finish_reason"] == "stop"

    upstream.enqueue(
        Reply(
            content=["Your name ", "is Ada."],
            usage={"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34},
        )
    )
    stream = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "What is my name?"}],
        stream=True,
        extra_body={"conversation": conversation["id"]},
    )
    chunks = list(stream)
    sent = upstream.requests[-1]["messages"]
    assert sent == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    conversation_chunks = [c for c in chunks if (c.model_extra or {}).get("conversation")]
    assert len(conversation_chunks) == 1 and chunks[-1] is conversation_chunks[0]
    items = stored_items(llm_api, token, conversation["id"], 4)
    assert items[3]["content"][0]["text"] == "Your name is Ada."
    assert items[3]["usage"] == {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}


def test_conversation_event_comes_right_before_done(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    body = {
        "model": FAKE_MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "conversation": {},
    }
    with llm_api.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = b"".join(response.iter_raw()).split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    conversation_event = orjson.loads(events[-3][6:])
    assert conversation_event["object"] == "chat.completion.chunk"
    assert conversation_event["conversation"]["id"].startswith("conv_")
    assert orjson.loads(events[-4][6:])["usage"]["total_tokens"] > 0


def test_history_is_bounded(
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]], upstream: FakeUpstream
) -> None:
    with wired_llm_api(history_max_items=2) as api:
        token = api.token()
        client = api.client(token)
        first = client.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "one"}], extra_body={"conversation": {}}
        )
        conversation_id = (first.model_extra or {})["conversation"]["id"]
        for stored, text in ((2, "two"), (4, "three")):
            stored_items(api, token, conversation_id, stored)
            client.chat.completions.create(
                model=FAKE_MODEL,
                messages=[{"role": "user", "content": text}],
                extra_body={"conversation": conversation_id},
            )
        sent = upstream.requests[-1]["messages"]
        assert [m["content"] for m in sent] == ["two", "echo: two", "three"]


def test_store_false_keeps_nothing(llm_api: LlmApi) -> None:
    token = llm_api.token()
    with llm_api.http(token) as http:
        conversation_id = http.post("/v1/conversations", json={}).json()["id"]
    llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "secret"}],
        extra_body={"conversation": conversation_id, "store": False},
    )
    llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "kept"}],
        extra_body={"conversation": conversation_id},
    )
    items = stored_items(llm_api, token, conversation_id, 2)
    assert [i["content"][0]["text"] for i in items] == ["kept", "echo: kept"]


def test_client_disconnect_cancels_upstream_and_stores_incomplete(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    """The upstream stalls forever after two chunks; only a cancelled relay can store the turn."""
    token = llm_api.token()
    upstream.enqueue(Reply(content=["partial ", "answer ", "never ", "finished"], stall_after_chunks=3))
    stream = llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "tell me"}],
        stream=True,
        extra_body={"conversation": {}},
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if received == "partial ":
            break
    stream.close()
    conversations = eventually(lambda: llm_api.http(token).get("/v1/conversations").json()["data"])
    conversation_id = conversations[0]["id"]
    items = stored_items(llm_api, token, conversation_id, 2)
    assert items[0]["status"] == "completed" and items[0]["content"][0]["text"] == "tell me"
    assert items[1]["status"] == "incomplete"
    assert items[1]["incomplete_details"] == {"reason": "client_disconnected"}
    assert items[1]["content"][0]["text"].startswith("partial ")


def test_upstream_drop_mid_stream_is_an_error_event(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    token = llm_api.token()
    upstream.enqueue(Reply(content=["one ", "two ", "three ", "four"], drop_after_chunks=3))
    stream = llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        extra_body={"conversation": {}},
    )
    received = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received += chunk.choices[0].delta.content or ""
    assert received == "one two "
    assert "lost mid-stream" in caught.value.message
    # The cut-short turn (and with it the new conversation) is written in the background.
    conversations = eventually(lambda: llm_api.http(token).get("/v1/conversations").json()["data"])
    items = stored_items(llm_api, token, conversations[0]["id"], 2)
    assert items[1]["status"] == "incomplete" and items[1]["incomplete_details"] == {
        "reason": "upstream_error"
    }
    assert items[1]["content"][0]["text"] == "one two "
    # the service is fine afterwards
    again = llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL, messages=[{"role": "user", "content": "ok?"}]
    )
    assert again.choices[0].message.content == "echo: ok?"


def test_an_upstream_503_is_retried_once(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    upstream.enqueue(Reply(status=503), Reply(content="second try"))
    completion = client.chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "second try"
    assert len(upstream.requests) == 2


def test_an_upstream_500_is_a_502_and_not_retried(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    upstream.enqueue(Reply(status=500, error_body={"error": {"message": "model exploded"}}))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert caught.value.status_code == 502
    assert "model exploded" in caught.value.message
    assert len(upstream.requests) == 1  # a 500 may have reached the model: no retry


def test_an_upstream_400_is_the_callers_400(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    upstream.enqueue(Reply(status=400, error_body={"error": {"message": "max_tokens too large"}}))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=10**9
        )
    assert "max_tokens too large" in bad.value.message


def _normalised(raw: bytes) -> list[Any]:
    """The events of a stream without ids and timestamps, which differ between two calls."""
    events: list[Any] = []
    for line in raw.split(b"\n\n"):
        if line == b"data: [DONE]":
            events.append(line)
        elif line:
            events.append({k: v for k, v in orjson.loads(line[6:]).items() if k not in ("id", "created")})
    return events


def test_a_client_leaving_right_after_done_has_a_complete_turn(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    """Some servers close their end a while after `[DONE]`; the client may be gone by then."""
    token = llm_api.token()
    upstream.enqueue(Reply(content=["all ", "of ", "it"], linger_after_done=30))
    stream = llm_api.client(token).chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        extra_body={"conversation": {}},
    )
    chunks = list(stream)  # the openai client stops at [DONE] and closes the response
    conversation_id = (chunks[-1].model_extra or {})["conversation"]["id"]
    items = stored_items(llm_api, token, conversation_id, 2)
    assert items[1]["status"] == "completed" and items[1]["content"][0]["text"] == "all of it"


def test_tool_calls_are_stored_and_replayed_as_history(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    token = llm_api.token()
    client = llm_api.client(token)
    upstream.enqueue(Reply(content="", tool_calls=[TOOL_CALL]))
    chunks = list(
        client.chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "weather in Hanoi?"}],
            stream=True,
            extra_body={"conversation": {}},
        )
    )
    conversation_id = (chunks[-1].model_extra or {})["conversation"]["id"]
    _, assistant, call = stored_items(llm_api, token, conversation_id, 3)
    assert assistant["role"] == "assistant" and assistant["finish_reason"] == "tool_calls"
    assert call == {
        **call,
        "type": "function_call",
        "call_id": "call_abc123",
        "name": "get_weather",
        "arguments": TOOL_CALL["function"]["arguments"],
    }
    client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "tool", "tool_call_id": "call_abc123", "content": "31 C, humid"}],
        extra_body={"conversation": conversation_id},
    )
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "weather in Hanoi?"},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call_abc123", "content": "31 C, humid"},
    ]
    items = stored_items(llm_api, token, conversation_id, 5)
    assert items[3]["type"] == "function_call_output" and items[3]["output"] == "31 C, humid"


def test_request_id_and_trace_context_reach_the_upstream(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    with llm_api.http() as http:
        body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "x"}]}
        response = http.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "req-123"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "req-123"
    assert upstream.headers[-1]["x-request-id"] == "req-123"
    assert upstream.headers[-1]["traceparent"].startswith("00-")
