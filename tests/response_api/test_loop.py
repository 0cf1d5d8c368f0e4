"""The tool loop through the official client: plain answers, tool rounds, errors, timeouts, depth."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI
from sqlalchemy import text

from apps.common.db import create_engine
from apps.gateway.embedded import free_port
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MAX_DEPTH, MODEL, TOOL_TIMEOUT, Peers, ServerFactory
from tests.harness.upstream import FakeUpstream
from tests.response_api.scripts import answer, call, tool_round


async def executions(database_url: str, response_id: str) -> list[dict[str, Any]]:
    """The tool executions response-api recorded for a response, in order."""
    engine = create_engine(database_url, schema="response_api", pool_size=1)
    query = text("SELECT * FROM tool_executions WHERE response_id = :id ORDER BY execution_order")
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(query, {"id": response_id})).mappings().all()
    finally:
        await engine.dispose()
    return [dict(row) for row in rows]


async def test_plain_answer(client: AsyncOpenAI, upstream: FakeUpstream, peers: Peers, token: str) -> None:
    upstream.enqueue(answer("Hello there, friend."))
    response = await client.responses.create(model=MODEL, input="Say hello", instructions="Be brief.")
    assert response.status == "completed"
    assert response.output_text == "Hello there, friend."
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens > 0
    sent = upstream.requests[0]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "Say hello"}
    assert {tool["function"]["name"] for tool in sent["tools"]} == {"add", "echo", "slow", "fail"}
    assert peers.llm_api_authorizations()[-1] == f"Bearer {token}"


async def test_one_tool_round(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools, database_url: str, token: str
) -> None:
    upstream.enqueue(tool_round(call("add", {"a": 2, "b": 3}, "call_a")), answer("The sum is 5."))
    response = await client.responses.create(model=MODEL, input="What is 2 + 3?")
    assert response.status == "completed"
    kinds = [item.type for item in response.output]
    assert kinds == ["mcp_call", "message"]
    mcp_call = response.output[0]
    assert mcp_call.type == "mcp_call"
    assert (mcp_call.name, mcp_call.output, mcp_call.error, mcp_call.server_label) == (
        "add",
        "5",
        None,
        "jan",
    )
    assert response.output_text == "The sum is 5."
    second = upstream.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_a"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_a", "content": "5"}
    assert mcp_tools.calls == [("add", {"a": 2, "b": 3})]
    assert mcp_tools.authorizations and all(a == f"Bearer {token}" for a in mcp_tools.authorizations)
    rows = await executions(database_url, response.id)
    assert [(r["tool_name"], r["status"], r["arguments"], r["call_id"]) for r in rows] == [
        ("add", "completed", {"a": 2, "b": 3}, "call_a")
    ]


async def test_several_rounds_with_parallel_calls(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools, database_url: str
) -> None:
    upstream.enqueue(
        tool_round(call("add", {"a": 1, "b": 2}, "c1"), call("echo", {"text": "hi"}, "c2")),
        tool_round(call("add", {"a": 3, "b": 4}, "c3")),
        answer("Done: 3, hi, 7."),
    )
    response = await client.responses.create(model=MODEL, input="Work it out.")
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["mcp_call", "mcp_call", "mcp_call", "message"]
    assert [getattr(item, "output", None) for item in response.output[:3]] == ["3", "hi", "7"]
    assert upstream.requests[0]["parallel_tool_calls"] is True
    round_two = upstream.requests[1]["messages"]
    assert [m["role"] for m in round_two[-3:]] == ["assistant", "tool", "tool"]
    assert len(round_two[-3]["tool_calls"]) == 2
    rows = await executions(database_url, response.id)
    assert [(r["call_id"], r["execution_order"], r["status"]) for r in rows] == [
        ("c1", 0, "completed"),
        ("c2", 1, "completed"),
        ("c3", 2, "completed"),
    ]
    assert all(r["duration_ms"] >= 0 and r["started_at"] is not None for r in rows)


async def test_sequential_calls_when_parallel_is_off(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(tool_round(call("add", {"a": 1, "b": 1}, "s1"), call("add", {"a": 2, "b": 2}, "s2")))
    upstream.enqueue(answer("2 and 4"))
    response = await client.responses.create(model=MODEL, input="Add", parallel_tool_calls=False)
    assert upstream.requests[0]["parallel_tool_calls"] is False
    assert response.output_text == "2 and 4"


async def test_tool_error_is_fed_back(client: AsyncOpenAI, upstream: FakeUpstream, database_url: str) -> None:
    upstream.enqueue(tool_round(call("fail", {"reason": "no"}, "f1")), answer("The tool failed, sorry."))
    response = await client.responses.create(model=MODEL, input="Try the failing tool")
    assert response.status == "completed"
    failed = response.output[0]
    assert failed.type == "mcp_call" and failed.status == "failed" and failed.output is None
    assert failed.error is not None and failed.error.type == "mcp_tool_execution_error"
    fed_back = upstream.requests[1]["messages"][-1]
    assert fed_back["role"] == "tool" and fed_back["content"].startswith("Tool error:")
    rows = await executions(database_url, response.id)
    assert rows[0]["status"] == "failed" and rows[0]["error_message"]


async def test_unknown_tool_and_bad_arguments_are_fed_back(
    client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    broken = {"id": "b1", "type": "function", "function": {"name": "add", "arguments": "[1, 2]"}}
    upstream.enqueue(tool_round(call("teleport", {}, "u1"), broken), answer("ok"))
    response = await client.responses.create(model=MODEL, input="Go")
    assert response.status == "completed"
    errors = [getattr(item.error, "message", None) for item in response.output[:2] if item.type == "mcp_call"]
    assert errors == ["Tool 'teleport' is not available.", "The arguments for 'add' are not a JSON object."]


async def test_tool_timeout_is_fed_back(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools, database_url: str
) -> None:
    upstream.enqueue(tool_round(call("slow", {"seconds": 60}, "t1")), answer("It took too long."))
    response = await client.responses.create(model=MODEL, input="Be slow")
    assert response.status == "completed"
    timed_out = response.output[0]
    assert timed_out.type == "mcp_call" and timed_out.status == "failed"
    assert timed_out.error is not None and timed_out.error.type == "mcp_protocol_error"
    assert f"{TOOL_TIMEOUT:g} s" in getattr(timed_out.error, "message", "")
    assert "did not finish" in upstream.requests[1]["messages"][-1]["content"]
    rows = await executions(database_url, response.id)
    assert rows[0]["status"] == "failed" and "did not finish" in rows[0]["error_message"]


async def test_depth_exhaustion_ends_incomplete(
    client: AsyncOpenAI, upstream: FakeUpstream, database_url: str
) -> None:
    upstream.enqueue(*(tool_round(call("add", {"a": n, "b": 1}, f"d{n}")) for n in range(MAX_DEPTH + 1)))
    response = await client.responses.create(model=MODEL, input="Loop forever")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_tool_execution_depth"  # type: ignore[comparison-overlap]
    assert len(upstream.requests) == MAX_DEPTH + 1
    statuses = [item.status for item in response.output if item.type == "mcp_call"]
    assert statuses == ["completed"] * MAX_DEPTH + ["incomplete"]
    assert len(await executions(database_url, response.id)) == MAX_DEPTH


async def test_function_tools_are_returned_to_the_client(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    weather: Any = {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {}},
    }
    upstream.enqueue(tool_round(call("get_weather", {"city": "Hanoi"}, "w1")))
    first = await client.responses.create(model=MODEL, input="Weather?", tools=[weather])
    assert first.status == "completed"
    fn = first.output[0]
    assert fn.type == "function_call" and fn.call_id == "w1" and fn.arguments == '{"city":"Hanoi"}'
    assert [tool["function"]["name"] for tool in upstream.requests[0]["tools"]] == ["get_weather"]
    upstream.enqueue(answer("It is sunny in Hanoi."))
    second = await client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "w1", "output": "sunny"}],
        tools=[weather],
    )
    assert second.output_text == "It is sunny in Hanoi."
    messages = upstream.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "w1"
    assert messages[2] == {"role": "tool", "tool_call_id": "w1", "content": "sunny"}


async def test_named_mcp_tools_only(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("ok"))
    tools: Any = [
        {"type": "mcp", "server_label": "jan", "allowed_tools": ["add"], "require_approval": "never"}
    ]
    await client.responses.create(model=MODEL, input="hi", tools=tools, tool_choice="required")
    sent = upstream.requests[0]
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["add"]
    assert sent["tool_choice"] == "required"


async def test_unreachable_mcp_tools(
    response_api_server: ServerFactory, token: str, upstream: FakeUpstream
) -> None:
    """Tools nobody asked for are skipped; tools a request names make it fail clearly."""
    with response_api_server(mcp_tools_url=f"http://127.0.0.1:{free_port()}") as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as client:
            upstream.enqueue(answer("No tools today."))
            plain = await client.responses.create(model=MODEL, input="hi")
            named: Any = [{"type": "mcp", "server_label": "jan", "require_approval": "never"}]
            failed = await client.responses.create(model=MODEL, input="hi", tools=named)
    assert plain.status == "completed" and plain.output_text == "No tools today."
    assert "tools" not in upstream.requests[0]
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "tools_unavailable"  # type: ignore[comparison-overlap]
    assert len(upstream.requests) == 1


async def test_a_tool_round_sends_only_its_calls(
    client: AsyncOpenAI, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    """With the tool listing cached, a response's MCP session lists nothing itself: the SDK, which
    checks results against the tools' output schemas, would otherwise send a `tools/list` before
    returning the first result of a session that never listed the tools."""
    upstream.enqueue(answer("Warm."))
    await client.responses.create(model=MODEL, input="Fill the tool catalog")
    mcp_tools.reset()
    upstream.enqueue(
        tool_round(call("add", {"a": 2, "b": 3}, "call_a")),
        tool_round(call("add", {"a": 5, "b": 1}, "call_b")),
        answer("Done."),
    )
    response = await client.responses.create(model=MODEL, input="Add twice")
    assert [item.type for item in response.output] == ["mcp_call", "mcp_call", "message"]
    assert [item.output for item in response.output[:2]] == ["5", "6"]  # type: ignore[union-attr]
    assert mcp_tools.methods == ["tools/call", "tools/call"]
