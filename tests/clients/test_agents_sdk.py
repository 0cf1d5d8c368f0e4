"""The OpenAI Agents SDK, default setup, runs the README's agent through `/v1/responses`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from agents.models._openai_shared import get_default_openai_client

from tests.clients.conftest import LocalApps
from tests.harness.upstream import Reply


@pytest.fixture
def sdk_loop() -> Iterator[None]:
    """The thread's default loop, for `Runner.run_sync`, which leaves it open on purpose (the SDK reuses
    it between runs) with the example's client holding a pooled connection on it. A script's exit ends
    both; this process goes on, so the test ends them, or they are reported unclosed at its exit."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        client = get_default_openai_client()
        if client is not None:
            loop.run_until_complete(client.close())
        asyncio.set_event_loop(None)  # as asyncio.run leaves the thread
        loop.close()


@pytest.mark.usefixtures("sdk_loop")
def test_the_readme_agent_calls_its_tool_and_answers(
    apps: LocalApps, capsys: pytest.CaptureFixture[str]
) -> None:
    apps.upstream.enqueue(
        Reply(
            content="",
            tool_calls=[
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Hanoi"}'},
                }
            ],
        ),
        Reply(content="The tool says it is sunny in Hanoi."),
    )
    namespace: dict[str, Any] = {"token": apps.token, "__name__": "readme_example"}
    exec(apps.readme_example("openai-agents"), namespace)

    assert capsys.readouterr().out.strip() == "The tool says it is sunny in Hanoi."
    first, second = apps.upstream.requests
    assert first["model"] == "smollm2-135m-instruct"
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather"]
    # The tool ran on the client and its output went back to the model in the next round.
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool_messages and tool_messages[-1]["tool_call_id"] == "call_w1"
    assert "It is sunny in Hanoi." in str(tool_messages[-1]["content"])
    assert namespace["result"].final_output == "The tool says it is sunny in Hanoi."
