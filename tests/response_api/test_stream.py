"""Streaming: OpenAI event names, order and sequence numbers, read with the official stream helpers."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.responses import Response

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, call, tool_round


def script() -> list[Reply]:
    return [
        Reply(content="Let me add.", tool_calls=[call("add", {"a": 20, "b": 22}, "s1")]),
        tool_round(call("fail", {"reason": "x"}, "s2"), call("echo", {"text": "yo"}, "s3")),
        answer("The answer is 42, and echo said yo."),
    ]


def shape(response: Response) -> list[tuple[Any, ...]]:
    """The output without generated ids, for comparing two runs of one script."""
    result: list[tuple[Any, ...]] = []
    for item in response.output:
        if item.type == "message":
            result.append(
                ("message", item.status, [(part.type, getattr(part, "text", None)) for part in item.content])
            )
        elif item.type == "mcp_call":
            error = item.error.model_dump() if item.error else None
            result.append(("mcp_call", item.name, item.arguments, item.output, error, item.status))
        else:
            result.append((item.type,))
    return result


async def test_stream_helper_events_match_the_plain_result(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(*script())
    plain = await client.responses.create(model=MODEL, input="What is 20 + 22?")

    upstream.enqueue(*script())
    async with client.responses.stream(model=MODEL, input="What is 20 + 22?") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()

    assert [event.sequence_number for event in events] == list(range(len(events)))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert final.status == "completed"
    assert shape(final) == shape(plain)
    assert final.output_text == plain.output_text == "Let me add.The answer is 42, and echo said yo."
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == final.output_text
    for name in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call.failed",
        "response.output_item.done",
    ):
        assert name in types, name
    first_call = types.index("response.mcp_call.in_progress")
    assert (
        types.index("response.mcp_call_arguments.done")
        < first_call
        < types.index("response.mcp_call.completed")
    )


async def test_raw_stream_relays_each_model_delta(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["Hel", "lo", " wor", "ld"]))
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    events = [event async for event in stream]
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Hel", "lo", " wor", "ld"]
    added = [e for e in events if e.type == "response.output_item.added"]
    assert len(added) == 1 and added[0].item.type == "message"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "Hello world"
    assert completed.response.usage is not None


async def test_streamed_function_call_arguments(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    lookup: Any = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    upstream.enqueue(tool_round(call("lookup", {"q": "jan server"}, "fn1")))
    async with client.responses.stream(model=MODEL, input="find", tools=[lookup]) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) == 2 and deltas[-1].snapshot == '{"q":"jan server"}'
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == '{"q":"jan server"}'
    item = final.output[0]
    assert item.type == "function_call" and item.call_id == "fn1" and item.status == "completed"


async def test_stream_reports_a_model_failure(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=500))
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.error is not None and "upstream failure" in failed.response.error.message


async def test_leaving_right_after_completion_keeps_the_response(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("kept"))
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    async for event in stream:
        if event.type == "response.completed":
            response_id = event.response.id
            break
    await stream.close()
    for _ in range(400):  # input items are read from the database only
        try:
            page = await client.responses.input_items.list(response_id)
        except openai.NotFoundError:
            await asyncio.sleep(0.05)
            continue
        break
    else:
        raise AssertionError("the completed response was never stored")
    assert [item.type for item in page.data] == ["message"]
    assert (await client.responses.retrieve(response_id)).status == "completed"
