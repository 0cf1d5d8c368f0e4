"""MCP approvals with the official client: a call that needs approval waits for the caller's answer."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from openai import AsyncOpenAI

from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream
from tests.response_api.scripts import answer, call, tool_round

# `add` needs approval; `echo` does not.
TOOLS: Any = [{"type": "mcp", "server_label": "jan", "require_approval": {"always": {"tool_names": ["add"]}}}]


async def ask(client: AsyncOpenAI, upstream: FakeUpstream) -> Any:
    """A first response in which the model calls `add` (held for approval) and `echo` (run)."""
    upstream.enqueue(tool_round(call("add", {"a": 2, "b": 3}, "a1"), call("echo", {"text": "hi"}, "e1")))
    async with client.responses.stream(model=MODEL, input="Add 2 and 3", tools=TOOLS) as stream:
        events = [event async for event in stream]
        first = await stream.get_final_response()
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["mcp_list_tools", "mcp_approval_request", "mcp_call"]
    return first


def approval(request_id: str, *, approve: bool, **extra: str) -> Any:
    """The input that answers an approval request."""
    return [{"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve, **extra}]


def tool_message(upstream: FakeUpstream, call_id: str) -> str:
    messages = upstream.requests[-1]["messages"]
    calls = [c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls") or ()]
    assert call_id in calls  # the model sees the call it made...
    found = [m["content"] for m in messages if m["role"] == "tool" and m["tool_call_id"] == call_id]
    assert len(found) == 1  # ...followed by exactly one answer to it
    return str(found[0])


async def test_an_approved_call_runs_in_the_next_response(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    first = await ask(client, upstream)
    assert first.status == "completed"
    request = next(item for item in first.output if item.type == "mcp_approval_request")
    assert request.name == "add" and request.server_label == "jan"
    assert orjson.loads(request.arguments) == {"a": 2, "b": 3}
    assert mcp_tools.calls == [("echo", {"text": "hi"})]  # only the call needing no approval ran

    upstream.enqueue(answer("2 + 3 = 5"))
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=TOOLS,
        input=approval(request.id, approve=True),
    )
    assert second.status == "completed" and second.output_text == "2 + 3 = 5"
    ran = second.output[0]
    assert ran.type == "mcp_call" and ran.name == "add" and ran.output == "5"
    assert ran.approval_request_id == request.id
    assert mcp_tools.calls[-1] == ("add", {"a": 2, "b": 3})
    assert tool_message(upstream, request.id) == "5"
    assert tool_message(upstream, "e1") == "hi"

    with pytest.raises(openai.BadRequestError) as twice:
        await client.responses.create(
            model=MODEL,
            previous_response_id=second.id,
            tools=TOOLS,
            input=approval(request.id, approve=True),
        )
    assert twice.value.body["param"] == "input[0].approval_request_id"  # type: ignore[index]


async def test_a_refused_approval_skips_the_call(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    first = await ask(client, upstream)
    request = next(item for item in first.output if item.type == "mcp_approval_request")

    upstream.enqueue(answer("Fine, I will not add."))
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=TOOLS,
        input=approval(request.id, approve=False, reason="not today"),
    )
    assert second.status == "completed" and second.output_text == "Fine, I will not add."
    assert [item.type for item in second.output] == ["message"]
    assert [name for name, _ in mcp_tools.calls] == ["echo"]  # `add` never ran
    assert tool_message(upstream, request.id) == "The user did not approve this tool call: not today"

    # Later turns replay the refusal the same way.
    upstream.enqueue(answer("ok"))
    await client.responses.create(model=MODEL, previous_response_id=second.id, input="and now?")
    assert tool_message(upstream, request.id) == "The user did not approve this tool call: not today"


async def test_always_asks_for_every_tool(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(tool_round(call("echo", {"text": "x"}, "e2")))
    every: Any = [{"type": "mcp", "server_label": "jan", "require_approval": "always"}]
    response = await client.responses.create(model=MODEL, input="echo x", tools=every)
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_approval_request"]


async def test_approval_through_a_conversation(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    conversation = await llm.conversations.create()
    upstream.enqueue(tool_round(call("add", {"a": 1, "b": 1}, "c1")))
    first = await client.responses.create(
        model=MODEL, input="1 + 1?", tools=TOOLS, conversation=conversation.id
    )
    request = next(item for item in first.output if item.type == "mcp_approval_request")
    stored = [item.type for item in (await llm.conversations.items.list(conversation.id, order="asc")).data]
    assert stored[-2:] == ["mcp_list_tools", "mcp_approval_request"]

    upstream.enqueue(answer("2"))
    second = await client.responses.create(
        model=MODEL,
        conversation=conversation.id,
        tools=TOOLS,
        input=approval(request.id, approve=True),
    )
    assert second.output[0].type == "mcp_call" and second.output[0].output == "2"
    assert mcp_tools.calls == [("add", {"a": 1, "b": 1})]
