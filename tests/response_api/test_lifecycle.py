"""Background mode, cancel, continuity (`previous_response_id`, `conversation`) and the stored resources."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL, ServerFactory
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.scripts import answer, call, tool_round
from tests.response_api.test_loop import executions

POLLS = 400


async def poll_until_done(client: AsyncOpenAI, response_id: str) -> Response:
    for _ in range(POLLS):
        response = await client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"{response_id} never finished")


async def test_background_response_polled_to_completion(
    client: AsyncOpenAI, upstream: FakeUpstream, database_url: str
) -> None:
    upstream.enqueue(
        tool_round(call("add", {"a": 1, "b": 1}, "b1")), Reply(content="Two.", first_byte_delay=0.3)
    )
    created = await client.responses.create(model=MODEL, input="1 + 1?", background=True)
    assert created.status == "queued" and created.background is True
    done = await poll_until_done(client, created.id)
    assert done.status == "completed" and done.output_text == "Two."
    assert [row["tool_name"] for row in await executions(database_url, created.id)] == ["add"]


async def test_background_survives_the_client_leaving(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["slowly", " but", " surely"], chunk_interval=0.1))
    stream = await client.responses.create(model=MODEL, input="go", background=True, stream=True)
    first = await stream.__anext__()
    assert first.type == "response.created"
    await stream.close()
    done = await poll_until_done(client, first.response.id)
    assert done.status == "completed" and done.output_text == "slowly but surely"


async def test_cancel_stops_the_loop_and_the_tool_in_flight(
    response_api_server: ServerFactory,
    token: str,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
    database_url: str,
) -> None:
    upstream.enqueue(tool_round(call("slow", {"seconds": 120}, "long")), answer("never sent"))
    with response_api_server(tool_execution_timeout=300) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as client:
            created = await client.responses.create(model=MODEL, input="wait", background=True)
            assert await asyncio.to_thread(mcp_tools.slow_started.wait, 30)
            cancelled = await client.responses.cancel(created.id)
            assert cancelled.status == "cancelled"
            assert await asyncio.to_thread(mcp_tools.slow_cancelled.wait, 30)
            stored = await client.responses.retrieve(created.id)
    assert stored.status == "cancelled"
    assert [(item.type, getattr(item, "status", None)) for item in stored.output] == [
        ("mcp_call", "incomplete")
    ]
    assert len(upstream.requests) == 1
    rows = await executions(database_url, created.id)
    assert [(r["tool_name"], r["status"], r["arguments"]) for r in rows] == [
        ("slow", "cancelled", {"seconds": 120})
    ]


async def test_cancel_reaches_the_replica_that_runs_the_response(
    response_api_server: ServerFactory, token: str, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    upstream.enqueue(tool_round(call("slow", {"seconds": 120}, "far")), answer("never sent"))
    with response_api_server(tool_execution_timeout=300) as runner, response_api_server() as other:
        async with (
            AsyncOpenAI(base_url=f"{runner}/v1", api_key=token, max_retries=0) as on_runner,
            AsyncOpenAI(base_url=f"{other}/v1", api_key=token, max_retries=0) as on_other,
        ):
            created = await on_runner.responses.create(model=MODEL, input="wait", background=True)
            assert await asyncio.to_thread(mcp_tools.slow_started.wait, 30)
            cancelled = await on_other.responses.cancel(created.id)
            assert cancelled.status == "cancelled"
            assert await asyncio.to_thread(mcp_tools.slow_cancelled.wait, 30)
            final = await poll_until_output(on_other, created.id)
    assert final.status == "cancelled"
    assert len(upstream.requests) == 1


async def poll_until_output(client: AsyncOpenAI, response_id: str) -> Response:
    """The response once its runner has recorded what it produced."""
    for _ in range(POLLS):
        response = await client.responses.retrieve(response_id)
        if response.output:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"{response_id} never recorded its output")


async def test_cancelling_a_finished_response_returns_it(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("done"))
    response = await client.responses.create(model=MODEL, input="hi")
    again = await client.responses.cancel(response.id)
    assert again.status == "completed" and again.output_text == "done"


async def test_previous_response_id_continues_the_chain(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("Hello Ada."))
    first = await client.responses.create(model=MODEL, input="My name is Ada.", instructions="Be kind.")
    upstream.enqueue(tool_round(call("echo", {"text": "Ada"}, "e1")), answer("Your name is Ada."))
    second = await client.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id
    )
    upstream.enqueue(answer("Bye Ada."))
    third = await client.responses.create(model=MODEL, input="Bye", previous_response_id=second.id)
    assert third.previous_response_id == second.id
    messages = upstream.requests[-1]["messages"]
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[0]["content"] == "My name is Ada." and messages[1]["content"] == "Hello Ada."
    assert messages[4] == {"role": "tool", "tool_call_id": "e1", "content": "Ada"}
    assert messages[5]["content"] == "Your name is Ada."
    # Instructions belong to the response that set them, as at OpenAI.
    assert all(m["role"] != "system" for m in messages)
    assert first.conversation is not None and third.conversation is not None
    assert third.conversation.id == first.conversation.id


async def test_conversation_collects_its_responses(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("Noted: blue."))
    first = await client.responses.create(model=MODEL, input="My colour is blue.")
    assert first.conversation is not None
    upstream.enqueue(answer("Blue."))
    await client.responses.create(model=MODEL, input="Colour?", conversation=first.conversation.id)
    upstream.enqueue(answer("Still blue."))
    await client.responses.create(model=MODEL, input="Again?", conversation={"id": first.conversation.id})
    contents = [m["content"] for m in upstream.requests[-1]["messages"]]
    assert contents == ["My colour is blue.", "Noted: blue.", "Colour?", "Blue.", "Again?"]


async def test_input_items_get_and_delete(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("ok"))
    inputs: Any = [
        {"role": "developer", "content": "Answer tersely."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "One"}]},
        {"role": "user", "content": "Two"},
    ]
    response = await client.responses.create(model=MODEL, input=inputs, metadata={"trace": "t1"})
    assert response.metadata == {"trace": "t1"}
    assert upstream.requests[0]["messages"][0] == {"role": "system", "content": "Answer tersely."}
    page = await client.responses.input_items.list(response.id, order="asc")
    texts = [item.content[0].text for item in page.data if item.type == "message"]  # type: ignore[union-attr]
    assert texts == ["Answer tersely.", "One", "Two"]
    newest = await client.responses.input_items.list(response.id, limit=1)
    assert newest.data[0].id == page.data[-1].id and newest.has_more
    fetched = await client.responses.retrieve(response.id)
    assert fetched.output_text == "ok" and fetched.id == response.id
    await client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)


async def test_unstored_responses_are_not_retrievable(
    client: AsyncOpenAI, upstream: FakeUpstream, database_url: str
) -> None:
    upstream.enqueue(tool_round(call("add", {"a": 5, "b": 5}, "n1")), answer("10"))
    response = await client.responses.create(model=MODEL, input="5+5", store=False)
    assert response.output_text == "10"
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(response.id)
    assert [row["call_id"] for row in await executions(database_url, response.id)] == ["n1"]


async def test_leaving_a_foreground_stream_cancels_it(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(content=["first", " second"], stall_after_chunks=2))
    stream = await client.responses.create(model=MODEL, input="go", stream=True)
    response_id = ""
    async for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    await stream.close()
    done = await poll_until_done(client, response_id)
    assert done.status == "cancelled"
    assert [(item.type, getattr(item, "status", None)) for item in done.output] == [("message", "incomplete")]


async def test_overall_deadline_fails_the_response(
    response_api_server: ServerFactory, token: str, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(content=["never", " finishes"], stall_after_chunks=2))
    with response_api_server(response_deadline=1.0) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as client:
            response = await client.responses.create(model=MODEL, input="stall")
    assert response.status == "failed"
    assert response.error is not None and response.error.code == "timeout"  # type: ignore[comparison-overlap]


async def test_local_mode_serves_responses_through_the_gateway(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """`make dev`: response-api reaches llm-api and mcp-tools through the local gateway."""
    upstream.enqueue(
        tool_round(call("scrape", {"url": "http://127.0.0.1:1/"}, "g1")), answer("Nothing there.")
    )
    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        async with AsyncOpenAI(
            base_url=f"{url}/v1", api_key=issuer.mint("local-user"), max_retries=0
        ) as client:
            response = await client.responses.create(model="local/fake-model", input="Read that page")
    assert response.status == "completed" and response.output_text == "Nothing there."
    scrape = response.output[0]
    assert scrape.type == "mcp_call" and scrape.name == "scrape" and scrape.status == "failed"
    assert "python_exec" in {tool["function"]["name"] for tool in upstream.requests[0]["tools"]}
    assert upstream.requests[1]["messages"][-1]["role"] == "tool"


async def test_stopping_the_server_fails_running_responses(
    response_api_server: ServerFactory,
    client: AsyncOpenAI,
    token: str,
    upstream: FakeUpstream,
    mcp_tools: FakeMcpTools,
) -> None:
    upstream.enqueue(tool_round(call("slow", {"seconds": 120}, "bye")), answer("never sent"))
    with response_api_server(tool_execution_timeout=300) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as short_lived:
            created = await short_lived.responses.create(model=MODEL, input="wait", background=True)
            assert await asyncio.to_thread(mcp_tools.slow_started.wait, 30)
    stored = await client.responses.retrieve(created.id)
    assert stored.status == "failed"
    assert stored.error is not None and stored.error.code == "server_error"
    assert await asyncio.to_thread(mcp_tools.slow_cancelled.wait, 30)
