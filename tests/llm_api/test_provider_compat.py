"""What llm-api guarantees whatever the provider does: a usage chunk at the end of every stream,
requests rewritten for providers that cannot take OpenAI's shapes, and model aliases without `/`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import openai
import pytest

from apps.llm_api.providers.registry import Provider, ProviderRegistry
from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.test_chat import stored_items

TOOL_CALL: Any = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Hanoi"}'},
}


@pytest.fixture(scope="module")
def llama_cpp_python_api(wired_llm_api: Callable[..., AbstractContextManager[LlmApi]]) -> Iterator[LlmApi]:
    """llm-api whose environment provider is of kind `llama_cpp_python` (local mode's model)."""
    with wired_llm_api(default_provider_name="local", default_provider_kind="llama_cpp_python") as api:
        yield api


def test_a_stream_without_provider_usage_ends_with_an_estimated_usage_chunk(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(content=["Hel", "lo", " there"], omit_usage=True))
    prompt = "count these characters"
    stream = llm_api.client().chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    # One per chunk that carried text: the opening role chunk has none.
    assert last.usage.completion_tokens == 3
    assert last.usage.prompt_tokens == math.ceil(len(prompt) / 4)
    assert last.usage.total_tokens == last.usage.prompt_tokens + 3
    assert (last.usage.model_extra or {}).get("estimated") is True
    assert last.model == "fake-model" and last.id == chunks[0].id
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_a_stream_with_provider_usage_is_left_alone(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    upstream.enqueue(Reply(content=["a", "b", "c"], usage=usage))
    chunks = list(
        llm_api.client().chat.completions.create(
            model=FAKE_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0].usage is not None
    assert with_usage[0].usage.model_dump(exclude_none=True) == usage


def test_the_estimated_usage_is_stored_with_the_turn(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["one", " two"], omit_usage=True))
    token = llm_api.token()
    chunks = list(
        llm_api.client(token).chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "abcd"}],
            stream=True,
            extra_body={"conversation": {}},
        )
    )
    conversation_id = (chunks[-1].model_extra or {})["conversation"]["id"]
    items = stored_items(llm_api, token, conversation_id, 2)
    assert items[1]["usage"]["completion_tokens"] == 2 and items[1]["usage"]["estimated"] is True


def test_llama_cpp_python_gets_text_parts_joined_and_no_null_content(
    llama_cpp_python_api: LlmApi, upstream: FakeUpstream
) -> None:
    client = llama_cpp_python_api.client()
    completion = client.chat.completions.create(
        model="local/fake-model",
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "Hanoi?"}],
            },
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "31 C"}]},
        ],
    )
    assert completion.choices[0].message.content
    sent = upstream.requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["Be brief.", "Weather\nHanoi?", "", "31 C"]
    assert sent[2]["tool_calls"] == [TOOL_CALL]


def test_llama_cpp_python_refuses_image_parts_with_a_400(
    llama_cpp_python_api: LlmApi, upstream: FakeUpstream
) -> None:
    image: Any = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}
    with pytest.raises(openai.BadRequestError) as caught:
        llama_cpp_python_api.client().chat.completions.create(
            model="local/fake-model",
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}],
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "unsupported_content"
    assert error["param"] == "messages[0].content[1]"
    assert upstream.requests == []


def test_other_kinds_get_content_parts_unchanged(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    parts: Any = [{"type": "text", "text": "hi"}, {"type": "text", "text": "there"}]
    llm_api.client().chat.completions.create(model=FAKE_MODEL, messages=[{"role": "user", "content": parts}])
    assert upstream.requests[-1]["messages"][0]["content"] == parts


def test_models_answer_to_aliases_without_a_slash(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    client = llm_api.client()
    listed = {m.id: m for m in client.models.list()}
    assert (listed[FAKE_MODEL].model_extra or {})["aliases"] == ["fake-model"]
    retrieved = client.models.retrieve("fake-model")
    assert retrieved.id == FAKE_MODEL
    completion = client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "via the alias"}]
    )
    assert completion.choices[0].message.content == "echo: via the alias"
    assert upstream.requests[-1]["model"] == "fake-model"


def test_llama_cpp_python_gets_grammar_safe_schemas(
    llama_cpp_python_api: LlmApi, upstream: FakeUpstream
) -> None:
    schema: Any = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 2048, "description": "The page"},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}, "maxItems": 50},
            "pattern": {"type": "string", "format": "date"},  # a property may be called like a keyword
        },
        "required": ["url"],
    }
    tool: Any = {"type": "function", "function": {"name": "scrape", "parameters": schema}}
    other: Any = {"type": "function", "function": {"name": "other", "parameters": schema}}
    upstream.enqueue(
        Reply(content="", tool_calls=[{**TOOL_CALL, "function": {"name": "scrape", "arguments": "{}"}}])
    )
    llama_cpp_python_api.client().chat.completions.create(
        model="local/fake-model",
        messages=[{"role": "user", "content": "Read example.org"}],
        tools=[tool, other],
        tool_choice={"type": "function", "function": {"name": "scrape"}},
        response_format={"type": "json_schema", "json_schema": {"name": "page", "schema": schema}},
    )
    sent = upstream.requests[-1]
    safe = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "The page"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "pattern": {"type": "string"},
        },
        "required": ["url"],
    }
    assert sent["tools"][0]["function"]["parameters"] == safe
    assert sent["tools"][1]["function"]["parameters"] == schema  # not forced: no grammar is built
    assert sent["response_format"] == {"type": "json_object", "schema": safe}


def test_llama_cpp_python_refuses_a_raw_grammar(llama_cpp_python_api: LlmApi, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        llama_cpp_python_api.client().chat.completions.create(
            model="local/fake-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"grammar": 'root ::= "a"{1,5000}'},
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "grammar"
    assert upstream.requests == []


async def test_an_alias_goes_where_the_lowest_ranked_provider_is(upstream_server: FakeUpstream) -> None:
    def provider(vendor: str, rank: int) -> Provider:
        return Provider(
            id=f"prov_{vendor}",
            name=vendor,
            kind="vllm",
            vendor=vendor,
            base_url=upstream_server.base_url,
            api_key=None,
            active=True,
            source="file",
            rank=rank,
        )

    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        registry = ProviderRegistry(client, [provider("later", 2), provider("first", 1)])
        await registry.sync()
    alias = registry.select("fake-model")
    assert alias is not None and alias.public_id == "first/fake-model"
    assert registry.select("first/fake-model") is alias
    later = registry.select("later/fake-model")
    assert later is not None and later.provider.vendor == "later"
    assert registry.aliases_of(alias) == ["fake-model"] and registry.aliases_of(later) == []
    assert registry.select("fake") is None and registry.select("first/") is None
