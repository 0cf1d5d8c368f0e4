"""A project's instructions reach the model on responses in its conversations, before the response's
own `instructions`, whether the response names the conversation or continues a previous response."""

from __future__ import annotations

import uuid
from typing import Any, cast

import openai
import pytest
from openai import AsyncOpenAI

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream
from tests.response_api.scripts import answer
from tests.response_api.test_conversations import chat_view, items_of


async def new_project(llm: AsyncOpenAI, name: str, instructions: str) -> str:
    body = {"name": f"{name}-{uuid.uuid4().hex[:8]}", "instructions": instructions}
    project = cast(dict[str, Any], await llm.post("/projects", cast_to=object, body=body))
    return str(project["id"])


async def test_project_instructions_come_first_on_every_response(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    project_id = await new_project(llm, "botany", "Answer as a botanist.")
    conversation = await llm.conversations.create(extra_body={"project_id": project_id})

    upstream.enqueue(answer("Ferns."))
    first = await client.responses.create(
        model=MODEL, input="Name a plant.", instructions="One word.", conversation=conversation.id
    )
    assert chat_view(upstream.requests[-1]["messages"]) == [
        ("system", "Answer as a botanist."),
        ("system", "One word."),
        ("user", "Name a plant."),
    ]
    assert first.instructions == "One word."  # the response reports what the caller sent

    upstream.enqueue(answer("Moss."))
    await client.responses.create(model=MODEL, input="Another?", previous_response_id=first.id)
    assert chat_view(upstream.requests[-1]["messages"]) == [
        ("system", "Answer as a botanist."),
        ("user", "Name a plant."),
        ("assistant", "Ferns."),
        ("user", "Another?"),
    ]
    # Stored items are the turns only: the instructions are applied, not recorded.
    items = await items_of(llm, conversation.id, 4)
    assert "botanist" not in str([item.model_dump() for item in items])


async def test_no_project_no_extra_message_and_deleting_it_stops_them(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("Hi."))
    await client.responses.create(model=MODEL, input="Hello", store=False)
    assert chat_view(upstream.requests[-1]["messages"]) == [("user", "Hello")]

    project_id = await new_project(llm, "rhymes", "Rhyme.")
    conversation = await llm.conversations.create(extra_body={"project_id": project_id})
    await llm.delete(f"/projects/{project_id}", cast_to=object)
    upstream.enqueue(answer("Plain."))
    await client.responses.create(model=MODEL, input="Still rhyming?", conversation=conversation.id)
    assert chat_view(upstream.requests[-1]["messages"]) == [("user", "Still rhyming?")]


async def test_another_users_conversation_in_a_project_stays_theirs(
    client: AsyncOpenAI, llm: AsyncOpenAI, other_client: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    project_id = await new_project(llm, "style", "Secret style.")
    conversation = await llm.conversations.create(extra_body={"project_id": project_id})
    with pytest.raises(openai.NotFoundError):
        await other_client.responses.create(model=MODEL, input="peek", conversation=conversation.id)
    assert all("Secret style." not in str(request) for request in upstream.requests)
