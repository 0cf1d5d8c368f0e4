"""What response-api sends to llm-api: pass-through fields, formats, limits, images, tool choice."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, call, tool_round


async def test_unknown_fields_pass_through_and_platform_ones_do_not(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("ok"))
    await client.responses.create(
        model=MODEL,
        input="hi",
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=64,
        user="end-user-7",
        reasoning={"effort": "low"},
        truncation="auto",
        extra_body={"seed": 7, "stop": ["END"]},
    )
    sent = upstream.requests[0]
    assert (sent["seed"], sent["stop"]) == (7, ["END"])
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["user"]) == (
        0.2,
        0.9,
        64,
        "end-user-7",
    )
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "reasoning" not in sent and "truncation" not in sent and "max_output_tokens" not in sent


async def test_text_format_becomes_response_format(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer('{"n": 1}'))
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = await client.responses.create(
        model=MODEL,
        input="number",
        text={"format": {"type": "json_schema", "name": "num", "schema": schema, "strict": True}},
    )
    assert upstream.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "num", "schema": schema, "strict": True},
    }
    assert response.output_text == '{"n": 1}'


async def test_length_limit_ends_incomplete(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content="cut sho", finish_reason="length"))
    response = await client.responses.create(model=MODEL, input="long story", max_output_tokens=3)
    assert response.status == "incomplete"
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )
    assert response.output_text == "cut sho"


async def test_images_become_image_parts(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("a cat"))
    content: Any = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://example.test/cat.png"},
    ]
    await client.responses.create(model=MODEL, input=[{"role": "user", "content": content}])
    assert upstream.requests[0]["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
    ]


async def test_named_tool_choice_applies_to_the_first_round_only(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(tool_round(call("echo", {"text": "x"}, "n1")), answer("done"))
    await client.responses.create(
        model=MODEL, input="echo x", tool_choice={"type": "mcp", "server_label": "jan", "name": "echo"}
    )
    assert upstream.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert "tool_choice" not in upstream.requests[1]


@pytest.mark.parametrize("depth", [256, 500])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_field_nested_too_deep_to_pass_on_is_a_400(
    client: AsyncOpenAI, upstream: FakeUpstream, depth: int, stream: bool
) -> None:
    """Read (up to ~1000 levels; the client's own encoder stops near there too) but not writable
    where it is stored and sent on (255): a 400, not a response failed with a server error."""
    nested: Any = []
    for _ in range(depth - 1):
        nested = [nested]
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model=MODEL, input="hi", stream=stream, extra_body={"x_vendor": nested})
    assert refused.value.status_code == 400
    assert upstream.requests == []
