"""Integers past the 64-bit range (orjson rounds them reading and refuses them writing) in a tool
call's arguments, a tool's output and a client's request: the response completes and is stored with
the number exact, or the request is refused with a 400; never a 500, and nothing lost."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI
from openai.types.responses.response_output_item import McpCall

from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, tool_round
from tests.response_api.test_loop import executions

BIG = 2**70 + 1  # past both 64-bit ranges, and not a float exactly


def _add(a: int, b: int) -> dict[str, Any]:
    arguments = json.dumps({"a": a, "b": b})  # as a model writes them: digit for digit
    return {"id": "call_big", "type": "function", "function": {"name": "add", "arguments": arguments}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_tool_round_with_huge_integers_completes_and_is_stored_exactly(
    client: AsyncOpenAI,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
    database_url: str,
    stream: bool,
) -> None:
    conversation = (await llm.conversations.create()).id
    upstream.enqueue(tool_round(_add(BIG, 1)), answer("added"))
    if stream:
        async with await client.responses.create(
            model=MODEL, input="Add them", conversation=conversation, stream=True
        ) as events:
            ends = [event async for event in events if event.type in ("response.completed", "error")]
        assert [event.type for event in ends] == ["response.completed"], ends
        response = ends[0].response  # type: ignore[union-attr]
    else:
        response = await client.responses.create(model=MODEL, input="Add them", conversation=conversation)
    assert response.status == "completed", response.error
    assert mcp_tools.calls == [("add", {"a": BIG, "b": 1})]  # the tool got the model's number
    tool_call = response.output[0]
    assert isinstance(tool_call, McpCall) and tool_call.output == str(BIG + 1)
    assert json.loads(tool_call.arguments) == {"a": BIG, "b": 1}
    rows = await executions(database_url, response.id)
    assert [row["arguments"] for row in rows] == [{"a": BIG, "b": 1}]
    # The model's next round was sent the tool's output as it came.
    assert str(BIG + 1) in json.loads(upstream.raw_requests[-1])["messages"][-1]["content"]
    stored = await client.responses.retrieve(response.id)
    assert stored.output[0].output == str(BIG + 1)  # type: ignore[union-attr]
    items = (await llm.conversations.items.list(conversation, order="asc", limit=100)).data
    calls = [item.model_dump() for item in items if item.type == "mcp_call"]
    assert [json.loads(c["arguments"]) for c in calls] == [{"a": BIG, "b": 1}]


@pytest.mark.parametrize(
    "field",
    [
        {"max_output_tokens": BIG},
        {"top_logprobs": BIG},
        {"metadata": {"k": BIG}},
        {"vendor_knob": {"nested": [BIG, -BIG]}},
        {"input": [{"role": "user", "content": "Hi", "vendor": BIG}]},
        {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "maximum": BIG}}]},
    ],
    ids=lambda field: next(iter(field)),
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_request_holding_a_huge_integer_is_answered_or_refused_never_a_500(
    client: AsyncOpenAI, upstream: FakeUpstream, field: dict[str, Any], stream: bool
) -> None:
    upstream.enqueue(Reply(content="fine"))
    body = {"model": MODEL, "input": "Hi", "stream": stream, "store": True, **field}
    try:
        response = await client.with_options(max_retries=0).post(
            "/responses", cast_to=httpx.Response, body=body
        )
    except openai.BadRequestError as refused:
        assert isinstance(refused.body, dict) and {"message", "type", "param", "code"} <= set(refused.body)
        return
    text = await response.aread()
    if stream:  # llm-api's refusal of a value comes as the stream's failure, naming the value
        if b"response.completed" not in text:
            assert b'"code":"invalid_value"' in text, text
            return
    else:
        assert orjson.loads(text)["status"] == "completed"
    sent = json.loads(upstream.raw_requests[-1])  # orjson, as the fake reads it, would round them
    for key, value in field.items():
        if key in ("max_output_tokens", "vendor_knob"):
            assert sent[{"max_output_tokens": "max_tokens"}.get(key, key)] == value
