"""Bad input and other users' ids: clear 4xx answers in OpenAI's error envelope."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.response_api.scripts import answer

BAD_REQUESTS: list[tuple[dict[str, Any], str | None]] = [
    ({"input": "hi"}, "model"),
    ({"model": MODEL, "input": 42}, "input"),
    ({"model": MODEL, "input": []}, "input"),
    ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": MODEL, "input": [{"type": "weird"}]}, "input[0].type"),
    ({"model": MODEL, "input": "hi", "temperature": 7}, "temperature"),
    ({"model": MODEL, "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
    (
        {"model": MODEL, "input": "hi", "tools": [{"type": "mcp", "server_url": "http://evil"}]},
        "tools[0].server_url",
    ),
    (
        {"model": MODEL, "input": "hi", "tools": [{"type": "mcp", "require_approval": "sometimes"}]},
        "tools[0].require_approval",
    ),
    (
        {
            "model": MODEL,
            "input": "hi",
            "tools": [{"type": "mcp", "require_approval": {"always": {"tool_names": "add"}}}],
        },
        "tools[0].require_approval.always",
    ),
    ({"model": MODEL, "input": [{"type": "mcp_approval_response", "approve": "yes"}]}, "input[0]"),
    (
        {
            "model": MODEL,
            "input": [{"type": "mcp_approval_response", "approve": True, "approval_request_id": "mcpr_nope"}],
        },
        "input[0].approval_request_id",
    ),
    ({"model": MODEL, "input": "hi", "tools": [{"type": "computer"}]}, None),
    ({"model": MODEL, "input": "hi", "background": True, "store": False}, "background"),
    (
        {"model": MODEL, "input": "hi", "previous_response_id": "resp_x", "conversation": "conv_y"},
        "conversation",
    ),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
async def test_bad_input_is_a_400(
    response_api_url: str, token: str, body: dict[str, Any], param: str | None
) -> None:
    async with httpx.AsyncClient(base_url=response_api_url, timeout=CLIENT_TIMEOUT) as http:
        reply = await http.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


async def test_missing_credentials_is_a_401(response_api_url: str) -> None:
    async with httpx.AsyncClient(base_url=response_api_url, timeout=CLIENT_TIMEOUT) as http:
        reply = await http.post("/v1/responses", json={"model": MODEL, "input": "hi"})
    assert reply.status_code == 401


async def test_model_refusal_keeps_its_status(client: AsyncOpenAI, upstream: FakeUpstream) -> None:
    """llm-api refuses an unknown model with a 404; the caller gets that 404 and its message."""
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="fake/nope", input="hi")
    assert "fake/nope" in str(caught.value)
    assert upstream.requests == []


async def test_another_users_response_is_not_found(
    client: AsyncOpenAI, other_client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("private"))
    mine = await client.responses.create(model=MODEL, input="secret")
    assert mine.conversation is not None
    for attempt in (
        other_client.responses.retrieve(mine.id),
        other_client.responses.cancel(mine.id),
        other_client.responses.delete(mine.id),
        other_client.responses.input_items.list(mine.id),
        other_client.responses.create(model=MODEL, input="x", previous_response_id=mine.id),
        other_client.responses.create(model=MODEL, input="x", conversation=mine.conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            await attempt
    still = await client.responses.retrieve(mine.id)
    assert still.output_text == "private"


async def test_unknown_ids_are_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_missing")
    with pytest.raises(openai.BadRequestError):
        await client.responses.input_items.list("resp_missing", limit=1000)
