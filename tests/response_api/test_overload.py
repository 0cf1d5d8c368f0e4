"""response-api bounds the responses it runs at once, background ones included."""

from __future__ import annotations

import asyncio

import openai
import pytest
from openai import AsyncOpenAI

from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.response_api import MODEL, ServerFactory
from tests.harness.upstream import FakeUpstream
from tests.response_api.scripts import answer, call, tool_round


async def test_past_the_running_bound_a_new_response_is_refused_before_anything_is_stored(
    response_api_server: ServerFactory, token: str, upstream: FakeUpstream, mcp_tools: FakeMcpTools
) -> None:
    upstream.enqueue(tool_round(call("slow", {"seconds": 120}, "long")))
    with response_api_server(tool_execution_timeout=300, max_running_responses=1) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as client:
            running = await client.responses.create(model=MODEL, input="wait", background=True)
            assert await asyncio.to_thread(mcp_tools.slow_started.wait, 30)
            with pytest.raises(openai.InternalServerError) as refused:
                await client.responses.create(model=MODEL, input="one more", background=True)
            assert refused.value.status_code == 503
            assert int(refused.value.response.headers["retry-after"]) >= 1
            assert refused.value.response.json()["error"]["code"] == "server_overloaded"
            listed = await client.responses.input_items.list(running.id)
            assert listed.data  # the admitted one is stored and still running
            await client.responses.cancel(running.id)
            upstream.enqueue(answer("room again"))
            done = await client.responses.create(model=MODEL, input="now")
            assert done.status == "completed" and done.output_text == "room again"
