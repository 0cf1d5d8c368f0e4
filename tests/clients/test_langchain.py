"""LangChain's `ChatOpenAI` runs the README's example: invoke, stream with usage, bind_tools."""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import LocalApps
from tests.harness.upstream import Reply


def test_the_readme_langchain_example(apps: LocalApps, capsys: pytest.CaptureFixture[str]) -> None:
    apps.upstream.enqueue(
        Reply(content="Red, green and blue."),
        # The provider ignores include_usage: llm-api's own usage chunk must still end the stream.
        Reply(content=["One,", " two,", " three,", " four,", " five."], omit_usage=True),
        Reply(
            content="",
            tool_calls=[
                {
                    "id": "call_l1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Hanoi"}'},
                }
            ],
        ),
    )
    namespace: dict[str, Any] = {"token": apps.token, "__name__": "readme_example"}
    exec(apps.readme_example("langchain"), namespace)

    out = capsys.readouterr().out
    assert out.startswith("Red, green and blue.\nOne, two, three, four, five.{")
    invoke, stream, tools = apps.upstream.requests
    assert invoke["model"] == "smollm2-135m-instruct" and not invoke.get("stream")
    assert stream["stream"] is True and stream["stream_options"] == {"include_usage": True}
    usage = namespace["streamed"].usage_metadata
    assert usage is not None and usage["output_tokens"] == 5 and usage["input_tokens"] > 0
    assert [tool["function"]["name"] for tool in tools["tools"]] == ["get_weather"]
    call = namespace["call"]
    assert call.tool_calls == [
        {"name": "get_weather", "args": {"city": "Hanoi"}, "id": "call_l1", "type": "tool_call"}
    ]
