"""A response's new conversation, deleted by its user while the response runs, stays deleted.

A streamed or background response announces its new conversation's id before it ends
(`response.created`, the background 200), so the user can delete that conversation meanwhile. The
response's ending must not bring it back: the response is still stored and reported, without a
conversation (`conversation: null`), and the conversation stays gone.
"""

from __future__ import annotations

import threading

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream, Reply
from tests.response_api.test_lifecycle import poll_until_done


async def background_whose_conversation_is_deleted(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream, answer: str
) -> Response:
    """A background response whose new conversation its user deletes while the model is held."""
    hold = threading.Event()
    upstream.enqueue(Reply(content=answer, hold=hold))
    job = await client.responses.create(model=MODEL, input="one", background=True)
    assert job.conversation is not None
    try:
        await llm.conversations.delete(job.conversation.id)
    finally:
        hold.set()
    return job


async def test_a_deleted_new_conversation_of_a_streamed_response_stays_deleted(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    upstream.enqueue(Reply(content="late answer", hold=hold))
    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    events = aiter(stream)
    created = await anext(events)
    assert created.type == "response.created" and created.response.conversation is not None
    conversation_id = created.response.conversation.id

    try:
        await llm.conversations.delete(conversation_id)  # the announced conversation is there to delete
    finally:
        hold.set()
    rest = [event async for event in events]

    final = rest[-1]
    assert final.type == "response.completed" and final.response.output_text == "late answer"
    assert final.response.conversation is None
    with pytest.raises(openai.NotFoundError):
        await llm.conversations.retrieve(conversation_id)
    stored = await client.responses.retrieve(final.response.id)
    assert stored.status == "completed" and stored.conversation is None


async def test_a_deleted_new_conversation_of_a_background_response_stays_deleted(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    job = await background_whose_conversation_is_deleted(client, llm, upstream, "late answer")
    assert job.conversation is not None
    polled = await poll_until_done(client, job.id)
    assert polled.status == "completed" and polled.output_text == "late answer"
    assert polled.conversation is None
    with pytest.raises(openai.NotFoundError):
        await llm.conversations.retrieve(job.conversation.id)


async def test_a_response_continuing_one_whose_conversation_was_deleted_starts_a_new_one(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    job = await background_whose_conversation_is_deleted(client, llm, upstream, "one")
    assert job.conversation is not None
    assert (await poll_until_done(client, job.id)).status == "completed"

    upstream.enqueue(Reply(content="two"))
    second = await client.responses.create(model=MODEL, input="two", previous_response_id=job.id)
    assert second.conversation is not None and second.conversation.id != job.conversation.id
    assert (await llm.conversations.retrieve(second.conversation.id)).id == second.conversation.id


async def test_a_cancelled_response_whose_conversation_was_deleted_reports_none_like_a_completed_one(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    upstream.enqueue(Reply(content="never", hold=hold))
    job = await client.responses.create(model=MODEL, input="one", background=True)
    assert job.conversation is not None
    try:
        await llm.conversations.delete(job.conversation.id)
        cancelled = await client.responses.cancel(job.id)
    finally:
        hold.set()
    assert cancelled.status == "cancelled" and cancelled.conversation is None
    assert (await client.responses.retrieve(job.id)).conversation is None

    upstream.enqueue(Reply(content="two"))
    second = await client.responses.create(model=MODEL, input="two", previous_response_id=job.id)
    assert second.conversation is not None and second.conversation.id != job.conversation.id
    items = await llm.conversations.items.list(second.conversation.id, order="asc")
    assert [item.type for item in items.data] == ["message", "message"]


async def test_a_response_continuing_one_whose_conversation_was_deleted_since_starts_a_new_one(
    client: AsyncOpenAI, llm: AsyncOpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(content="one"))
    first = await client.responses.create(model=MODEL, input="one")
    assert first.conversation is not None
    await llm.conversations.delete(first.conversation.id)

    upstream.enqueue(Reply(content="two"))
    second = await client.responses.create(model=MODEL, input="two", previous_response_id=first.id)
    assert second.conversation is not None and second.conversation.id != first.conversation.id
    items = await llm.conversations.items.list(second.conversation.id, order="asc")
    assert [item.type for item in items.data] == ["message", "message"]
    # The chain still replays.
    assert upstream.requests[-1]["messages"][0] == {"role": "user", "content": "one"}
