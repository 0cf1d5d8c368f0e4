"""The OpenAI Agents SDK, default setup, runs the README's agent through `/v1/responses`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import LocalApps
from tests.harness.upstream import Reply


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
