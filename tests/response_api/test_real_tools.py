"""The loop through the real mcp-tools app: `python_exec` against the harness's sandbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from openai import AsyncOpenAI

from tests.harness.response_api import MODEL, ServerFactory
from tests.harness.sandbox import FakeSandbox, SandboxFault
from tests.harness.upstream import FakeUpstream
from tests.response_api.scripts import answer, call, tool_round
from tests.response_api.test_loop import executions


@pytest.fixture
async def client(
    response_api_server: ServerFactory, real_mcp_tools: str, token: str
) -> AsyncIterator[AsyncOpenAI]:
    with response_api_server(mcp_tools_url=real_mcp_tools, tool_execution_timeout=5.0) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as openai:
            yield openai


def run(code: str, call_id: str) -> dict[str, Any]:
    return call("python_exec", {"code": code}, call_id)


def stdout(item: Any) -> str:
    assert item.type == "mcp_call" and item.error is None, item
    result: str = orjson.loads(item.output)["stdout"]
    return result


async def test_tool_rounds_through_mcp_tools(
    client: AsyncOpenAI, upstream: FakeUpstream, sandbox: FakeSandbox, database_url: str
) -> None:
    upstream.enqueue(
        tool_round(run("print(6 * 7)", "p1"), run("print('hi')", "p2")),
        tool_round(run("print(sum(range(5)))", "p3")),
        answer("42, hi and 10."),
    )
    response = await client.responses.create(model=MODEL, input="Compute")
    assert response.status == "completed" and response.output_text == "42, hi and 10."
    assert [stdout(item) for item in response.output[:3]] == ["42\n", "hi\n", "10\n"]
    offered = {tool["function"]["name"] for tool in upstream.requests[0]["tools"]}
    assert {"python_exec", "scrape"} <= offered
    assert len(sandbox.requests) == 3
    rows = await executions(database_url, response.id)
    assert [(r["call_id"], r["tool_name"], r["status"]) for r in rows] == [
        ("p1", "python_exec", "completed"),
        ("p2", "python_exec", "completed"),
        ("p3", "python_exec", "completed"),
    ]


async def test_streamed_through_mcp_tools(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(tool_round(run("print(2 ** 10)", "s1")), answer("1024"))
    async with client.responses.stream(model=MODEL, input="2^10?") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "response.mcp_call.completed" in [event.type for event in events]
    assert stdout(final.output[0]) == "1024\n" and final.output_text == "1024"


async def test_sandbox_failure_and_hang_are_fed_back(
    client: AsyncOpenAI, upstream: FakeUpstream, sandbox: FakeSandbox, database_url: str
) -> None:
    sandbox.fail(SandboxFault(status=503), SandboxFault(stall=True))
    upstream.enqueue(
        tool_round(run("print(1)", "f1")),
        tool_round(run("print(2)", "f2")),
        answer("The sandbox is unwell."),
    )
    response = await client.responses.create(model=MODEL, input="Try", parallel_tool_calls=False)
    assert response.status == "completed" and response.output_text == "The sandbox is unwell."
    failed, hung = response.output[0], response.output[1]
    assert failed.type == "mcp_call" and failed.status == "failed"
    assert failed.error is not None and failed.error.type == "mcp_tool_execution_error"
    assert hung.type == "mcp_call" and hung.status == "failed"
    assert "did not finish within 5 s" in getattr(hung.error, "message", "")
    messages = upstream.requests[2]["messages"]
    assert [m["content"].startswith("Tool error:") for m in messages if m["role"] == "tool"] == [True, True]
    rows = await executions(database_url, response.id)
    assert [r["status"] for r in rows] == ["failed", "failed"]


async def test_cancel_during_a_long_sandbox_run(
    client: AsyncOpenAI, upstream: FakeUpstream, sandbox: FakeSandbox, database_url: str
) -> None:
    sandbox.fail(SandboxFault(stall=True))
    upstream.enqueue(tool_round(run("print('slow')", "c1")), answer("never sent"))
    created = await client.responses.create(model=MODEL, input="wait", background=True)
    for _ in range(400):
        if sandbox.requests:
            break
        await asyncio.sleep(0.05)
    cancelled = await client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert [(item.type, getattr(item, "status", None)) for item in cancelled.output] == [
        ("mcp_call", "incomplete")
    ]
    assert len(upstream.requests) == 1
    rows = await executions(database_url, created.id)
    assert [(r["tool_name"], r["status"]) for r in rows] == [("python_exec", "cancelled")]


async def test_progress_of_a_slow_run_streams_before_its_result(
    client: AsyncOpenAI, upstream: FakeUpstream, sandbox: FakeSandbox
) -> None:
    hold = threading.Event()
    sandbox.fail(SandboxFault(hold=hold))
    upstream.enqueue(tool_round(run("print('slow')", "g1")), answer("done"))
    item_ids: list[Any] = []
    async with client.responses.stream(model=MODEL, input="run it") as stream:
        types: list[str] = []
        async for event in stream:
            kind: str = event.type  # ours is not among the SDK's event names
            types.append(kind)
            if kind == "response.output_item.added":
                added: Any = event
                item_ids.append(added.item.id)
            if kind == "response.mcp_call.progress" and not hold.is_set():
                first: Any = event
                assert first.item_id == item_ids[0] and first.output_index == 0
                assert (first.progress, first.total, first.message) == (0, 30.0, "python_exec: started")
                hold.set()  # the sandbox answers only once progress has reached the client
        final = await stream.get_final_response()
    assert stdout(final.output[0]) == "slow\n"
    progress = types.index("response.mcp_call.progress")
    assert (
        types.index("response.mcp_call.in_progress") < progress < types.index("response.mcp_call.completed")
    )
