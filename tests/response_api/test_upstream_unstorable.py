"""What a model or a tool sends that Postgres cannot store (a NUL, an unpaired surrogate) does not
fail the response: it is stored, in its row, its tool executions and its conversation, with each
such character replaced by U+FFFD, and the client reads what was stored."""

from __future__ import annotations

from typing import Any

import pytest
from openai import AsyncOpenAI

from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, call, tool_round
from tests.response_api.test_loop import executions


async def conversation_texts(llm: AsyncOpenAI, conversation: str) -> list[Any]:
    page = await llm.conversations.items.list(conversation, order="asc", limit=100)
    found: list[Any] = []
    for item in page.data:
        data = item.model_dump()
        if data["type"] == "message":
            found.append(data["content"][0]["text"])
        elif data["type"] == "mcp_call":
            found.append((data["arguments"], data["output"], data["error"]))
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_model_reply_holding_a_nul_is_stored_with_it_replaced(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, stream: bool
) -> None:
    conversation = (await llm.conversations.create()).id
    upstream.enqueue(Reply(content=["before\x00", "after"]))
    if stream:
        async with await client.responses.create(
            model=MODEL, input="Say it", conversation=conversation, stream=True
        ) as events:
            ends = [event async for event in events if event.type in ("response.completed", "error")]
        assert [event.type for event in ends] == ["response.completed"]
        response = ends[0].response  # type: ignore[union-attr]
    else:
        response = await client.responses.create(model=MODEL, input="Say it", conversation=conversation)
    assert response.status == "completed"
    assert response.output_text == "before\ufffdafter"
    stored = await client.responses.retrieve(response.id)
    assert stored.output_text == "before\ufffdafter"
    assert await conversation_texts(llm, conversation) == ["Say it", "before\ufffdafter"]


async def test_tool_arguments_outputs_and_errors_holding_a_nul_are_stored_with_it_replaced(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools, database_url: str
) -> None:
    conversation = (await llm.conversations.create()).id
    upstream.enqueue(
        tool_round(call("echo", {"text": "x\x00y"}, "call_e"), call("fail", {"reason": "r\x00"}, "call_f")),
        answer("done"),
    )
    response = await client.responses.create(model=MODEL, input="Echo", conversation=conversation)
    assert response.status == "completed", response.error
    echoed, failed = response.output[:2]
    assert echoed.type == "mcp_call" and echoed.output == "x\ufffdy"
    assert failed.type == "mcp_call" and failed.error is not None and "\x00" not in str(failed.error)
    rows = await executions(database_url, response.id)
    assert [row["arguments"] for row in rows] == [{"text": "x\ufffdy"}, {"reason": "r\ufffd"}]
    assert "\x00" not in (rows[1]["error_message"] or "")
    texts = await conversation_texts(llm, conversation)
    assert texts[0] == "Echo" and texts[-1] == "done"
    stored = await client.responses.retrieve(response.id)
    assert stored.output[0].output == "x\ufffdy"  # type: ignore[union-attr]
    _ = mcp_tools


async def test_a_tool_name_or_call_id_longer_than_its_column_does_not_fail_the_response(
    client: AsyncOpenAI, upstream: FakeUpstream, database_url: str
) -> None:
    """A model may call a tool that does not exist, under any name and call id: that is fed back as
    a failed call, and recorded (cut to its columns), not a response that cannot be stored."""
    name, call_id = "t" * 300, "call_" + "c" * 200
    upstream.enqueue(tool_round(call(name, {}, call_id)), answer("no such tool"))
    response = await client.responses.create(model=MODEL, input="Call it")
    assert response.status == "completed", response.error
    assert response.output_text == "no such tool"
    rows = await executions(database_url, response.id)
    assert [(row["tool_name"], row["call_id"], row["status"]) for row in rows] == [
        (name[:256], call_id[:128], "failed")
    ]
