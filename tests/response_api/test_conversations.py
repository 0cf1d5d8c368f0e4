"""One conversation for chat and responses: llm-api owns it, `/v1/responses` reads and extends it.

Driven with the official `openai` client against the real llm-api and response-api (the model is the
harness's fake upstream), asserting on what the model received and on what
`conversations.items.list` shows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.conversations import ConversationItem
from pydantic import SecretStr

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL, Peers, ServerFactory
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, call, tool_round

POLLS = 400
MCP: Any = [{"type": "mcp", "server_label": "jan", "require_approval": "never"}]


async def items_of(
    llm: AsyncOpenAI, conversation_id: str, count: int | None = None
) -> list[ConversationItem]:
    """The conversation's items, oldest first (waiting for `count` of them: chat turns are written
    just after the answer)."""
    for _ in range(POLLS):
        page = await llm.conversations.items.list(conversation_id, order="asc", limit=100)
        if count is None or len(page.data) >= count:
            return page.data
        await asyncio.sleep(0.05)
    raise AssertionError(f"{conversation_id} never held {count} items")


def summary(item: ConversationItem) -> tuple[str, ...]:
    """(type, role, text) for messages, (type, name) for calls, (type, call id) for outputs."""
    data = item.model_dump()
    if data["type"] == "message":
        return ("message", data["role"], "".join(part.get("text") or "" for part in data["content"]))
    if data["type"] == "function_call_output":
        return ("function_call_output", data["call_id"])
    if data["type"] == "mcp_list_tools":
        return ("mcp_list_tools", data["server_label"])
    return (data["type"], data["name"])


def chat_view(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in messages]


async def test_responses_and_chat_share_one_conversation(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    conversation = await llm.conversations.create()

    upstream.enqueue(answer("Hello Ada."))
    first = await client.responses.create(model=MODEL, input="My name is Ada.", conversation=conversation.id)
    upstream.enqueue(answer("You are Ada."))
    second = await client.responses.create(model=MODEL, input="Who am I?", conversation=conversation.id)

    assert first.conversation is not None and first.conversation.id == conversation.id
    assert second.conversation is not None and second.conversation.id == conversation.id
    # The second answer saw the first turn.
    assert chat_view(upstream.requests[1]["messages"]) == [
        ("user", "My name is Ada."),
        ("assistant", "Hello Ada."),
        ("user", "Who am I?"),
    ]

    upstream.enqueue(answer("Still Ada."))
    chat = await llm.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "And now?"}],
        extra_body={"conversation": conversation.id},
    )
    assert chat.choices[0].message.content == "Still Ada."
    before = chat_view(upstream.requests[1]["messages"])
    assert chat_view(upstream.requests[2]["messages"]) == [
        *before,
        ("assistant", "You are Ada."),
        ("user", "And now?"),
    ]

    items = await items_of(llm, conversation.id, 6)
    assert [summary(item) for item in items] == [
        ("message", "user", "My name is Ada."),
        ("message", "assistant", "Hello Ada."),
        ("message", "user", "Who am I?"),
        ("message", "assistant", "You are Ada."),
        ("message", "user", "And now?"),
        ("message", "assistant", "Still Ada."),
    ]
    # A response's output item and the conversation item are the same object.
    assert items[1].id == first.output[0].id and items[3].id == second.output[0].id

    # And a response after the chat turn sees it too.
    upstream.enqueue(answer("Yes."))
    await client.responses.create(model=MODEL, input="Sure?", conversation={"id": conversation.id})
    assert chat_view(upstream.requests[3]["messages"])[-2:] == [
        ("assistant", "Still Ada."),
        ("user", "Sure?"),
    ]


async def test_a_stored_response_gets_a_conversation_llm_api_serves(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("Noted: blue."))
    first = await client.responses.create(model=MODEL, input="My colour is blue.")
    assert first.conversation is not None
    fetched = await llm.conversations.retrieve(first.conversation.id)
    assert fetched.id == first.conversation.id
    upstream.enqueue(answer("Blue."))
    second = await client.responses.create(model=MODEL, input="Colour?", previous_response_id=first.id)
    assert second.conversation is not None and second.conversation.id == first.conversation.id
    assert [summary(item) for item in await items_of(llm, first.conversation.id)] == [
        ("message", "user", "My colour is blue."),
        ("message", "assistant", "Noted: blue."),
        ("message", "user", "Colour?"),
        ("message", "assistant", "Blue."),
    ]
    # The conversation is titled from its first user message, as chat turns title theirs.
    assert (await llm.conversations.retrieve(first.conversation.id)).model_dump()["title"] == (
        "My colour is blue."
    )


async def test_tool_calls_and_their_outputs_are_conversation_items(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    conversation = await llm.conversations.create()
    weather: Any = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    upstream.enqueue(tool_round(call("add", {"a": 2, "b": 3}, "m1")), tool_round(call("weather", {}, "w1")))
    asked = await client.responses.create(
        model=MODEL, input="Sum, then weather", tools=[*MCP, *weather], conversation=conversation.id
    )
    assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_call", "function_call"]
    listed = asked.output[0]
    assert listed.type == "mcp_list_tools" and listed.server_label == "jan"
    assert {"add", "echo"} <= {tool.name for tool in listed.tools}

    upstream.enqueue(answer("Five, and sunny."))
    done = await client.responses.create(
        model=MODEL,
        input=[{"type": "function_call_output", "call_id": "w1", "output": "sunny"}],
        tools=[*MCP, *weather],
        conversation=conversation.id,
    )
    # The tools were listed once in this conversation, as at OpenAI.
    assert [item.type for item in done.output] == ["message"]
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "tool"]
    assert sent[2] == {"role": "tool", "tool_call_id": "m1", "content": "5"}
    assert sent[4] == {"role": "tool", "tool_call_id": "w1", "content": "sunny"}

    items = await items_of(llm, conversation.id)
    assert [summary(item) for item in items] == [
        ("message", "user", "Sum, then weather"),
        ("mcp_list_tools", "jan"),
        ("mcp_call", "add"),
        ("function_call", "weather"),
        ("function_call_output", "w1"),
        ("message", "assistant", "Five, and sunny."),
    ]
    mcp_call = items[2].model_dump()
    assert mcp_call["output"] == "5" and mcp_call["server_label"] == "jan"
    assert [item.id for item in items[1:4]] == [item.id for item in asked.output]


async def test_mcp_list_tools_is_streamed_as_openai_emits_it(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    upstream.enqueue(answer("Listed."))
    stream = await client.responses.create(model=MODEL, input="hi", tools=MCP, stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    start = types.index("response.output_item.added")
    assert types[start : start + 4] == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
    ]
    done = events[start + 3]
    assert done.type == "response.output_item.done" and done.item.type == "mcp_list_tools"
    assert "add" in {tool.name for tool in done.item.tools}
    final = events[-1]
    assert final.type == "response.completed"
    assert [item.type for item in final.response.output] == ["mcp_list_tools", "message"]


async def test_unstored_responses_read_but_do_not_extend_the_conversation(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    conversation = await llm.conversations.create(items=[{"role": "user", "content": "Remember 7."}])
    upstream.enqueue(answer("Seven."))
    await client.responses.create(
        model=MODEL, input="Which number?", conversation=conversation.id, store=False
    )
    assert chat_view(upstream.requests[0]["messages"]) == [("user", "Remember 7."), ("user", "Which number?")]
    assert len(await items_of(llm, conversation.id)) == 1


async def test_another_users_conversation_is_not_found(
    client: AsyncOpenAI,
    other_client: AsyncOpenAI,
    llm: AsyncOpenAI,
    other_llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    conversation = await llm.conversations.create(items=[{"role": "user", "content": "private"}])
    with pytest.raises(openai.NotFoundError) as caught:
        await other_client.responses.create(model=MODEL, input="peek", conversation=conversation.id)
    assert caught.value.body is not None and "conversation" in str(caught.value.body)
    with pytest.raises(openai.NotFoundError):
        await other_llm.conversations.items.list(conversation.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", conversation="conv_doesnotexist")
    assert upstream.requests == []
    assert len(await items_of(llm, conversation.id)) == 1


async def test_a_conversation_deleted_during_a_response_is_left_alone(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("one"))
    first = await client.responses.create(model=MODEL, input="one")
    assert first.conversation is not None
    await llm.conversations.delete(first.conversation.id)
    upstream.enqueue(answer("two"))
    second = await client.responses.create(model=MODEL, input="two", previous_response_id=first.id)
    assert second.status == "completed" and second.output_text == "two"


async def test_earlier_output_sent_back_as_input_is_not_listed_again(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    """What clients without server-side state do: the previous output goes back in as input."""
    upstream.enqueue(tool_round(call("echo", {"text": "hi"}, "e1")), answer("Echoed."))
    first = await client.responses.create(model=MODEL, input="Echo hi", tools=MCP, store=False)
    assert [item.type for item in first.output] == ["mcp_list_tools", "mcp_call", "message"]
    upstream.enqueue(answer("Done."))
    history: Any = [
        {"role": "user", "content": "Echo hi"},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": "Thanks"},
    ]
    second = await client.responses.create(model=MODEL, input=history, tools=MCP, store=False)
    assert [item.type for item in second.output] == ["message"]
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


async def test_a_conversation_llm_api_will_not_extend_is_a_storage_failure(
    response_api_server: ServerFactory,
    issuer: TestIssuer,
    token: str,
    llm: AsyncOpenAI,
    upstream: FakeUpstream,
) -> None:
    """The internal token is wrong: llm-api refuses response-api's conversation calls."""
    wrong = issuer.auth_settings(internal_token=SecretStr("not-the-token"))
    conversation = await llm.conversations.create()
    with response_api_server(auth=wrong) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as unread:
                await client.responses.create(model=MODEL, input="hi", conversation=conversation.id)
            upstream.enqueue(answer("Lost?"))
            with pytest.raises(openai.APIStatusError) as unstored:
                await client.responses.create(model=MODEL, input="hi")
            # A background response's new conversation is made before its 200: refused at once.
            with pytest.raises(openai.APIStatusError) as unmade:
                await client.responses.create(model=MODEL, input="hi", background=True)
    for caught in (unread, unstored, unmade):
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "5"
        assert caught.value.code == "conversations_unavailable"
    # The answer was produced but its conversation could not take it: the client is told.
    assert len(upstream.requests) == 1


async def test_one_conversation_in_local_mode(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """`make dev`, as the issue's user met it: one base URL, one conversation for both APIs."""
    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        async with AsyncOpenAI(
            base_url=f"{url}/v1", api_key=issuer.mint("local-user"), max_retries=0
        ) as client:
            conversation = await client.conversations.create()
            upstream.enqueue(answer("Hi Bo."))
            await client.responses.create(
                model="local/fake-model", input="I am Bo.", conversation=conversation.id
            )
            upstream.enqueue(answer("Bo."))
            later = await client.responses.create(model="local/fake-model", input="Name?")
            assert later.conversation is not None
            fetched = await client.conversations.retrieve(later.conversation.id)
            items = await items_of(client, conversation.id)
    assert fetched.id == later.conversation.id
    assert [summary(item) for item in items] == [
        ("message", "user", "I am Bo."),
        ("message", "assistant", "Hi Bo."),
    ]


async def test_replayed_item_ids_do_not_break_the_conversation(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    """An item sent again with its id (already a conversation item) is stored under a fresh id."""
    weather: Any = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    upstream.enqueue(tool_round(call("weather", {}, "w9")))
    asked = await client.responses.create(model=MODEL, input="Weather?", tools=weather)
    assert asked.conversation is not None
    function_call = asked.output[0].model_dump(exclude_none=True)
    replay: Any = [function_call, {"type": "function_call_output", "call_id": "w9", "output": "rain"}]
    upstream.enqueue(answer("Rain."))
    await client.responses.create(
        model=MODEL,
        input=replay,
        tools=weather,
        conversation=asked.conversation.id,
    )
    items = await items_of(llm, asked.conversation.id)
    calls = [item for item in items if item.type == "function_call"]
    assert len(calls) == 2 and calls[0].id == function_call["id"] and calls[1].id != calls[0].id


async def test_a_new_conversation_costs_one_call_to_llm_api(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, peers: Peers
) -> None:
    """A response without `conversation` names its new conversation itself; llm-api creates it with
    the response's items in the one append at its end, not in a call of its own at the start."""
    upstream.enqueue(answer("Hello, Ada."))
    seen = len(peers.llm_api_requests())
    response = await client.responses.create(model=MODEL, input="Hi, I am Ada.", tools=[])
    assert response.conversation is not None
    conversation_id = response.conversation.id
    assert peers.llm_api_requests()[seen:] == [
        "POST /v1/chat/completions",
        f"POST /internal/conversations/{conversation_id}/items",
    ]
    conversation = await llm.conversations.retrieve(conversation_id)
    assert conversation.model_extra is not None and conversation.model_extra.get("title") == "Hi, I am Ada."
    stored = await items_of(llm, conversation_id)
    assert [summary(item) for item in stored] == [
        ("message", "user", "Hi, I am Ada."),
        ("message", "assistant", "Hello, Ada."),
    ]
    assert stored[1].id == response.output[0].id
    upstream.enqueue(answer("Ada."))
    await client.responses.create(model=MODEL, input="Who am I?", conversation=conversation_id, tools=[])
    assert [m["content"] for m in upstream.requests[-1]["messages"]][:2] == ["Hi, I am Ada.", "Hello, Ada."]


async def test_a_failed_response_still_leaves_its_new_conversation(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(status=500, error_body={"error": {"message": "boom"}}))
    failed = await client.responses.create(model=MODEL, input="Fail, please.", tools=[])
    assert failed.status == "failed" and failed.conversation is not None
    assert await items_of(llm, failed.conversation.id) == []  # made, with nothing in it
    upstream.enqueue(answer("Better now."))
    again = await client.responses.create(
        model=MODEL, input="Again?", conversation=failed.conversation.id, tools=[]
    )
    assert again.status == "completed"
    assert [summary(item) for item in await items_of(llm, failed.conversation.id)] == [
        ("message", "user", "Again?"),
        ("message", "assistant", "Better now."),
    ]
