"""A model reply holding text Postgres cannot store (a NUL, an unpaired surrogate) is still stored,
with each such character replaced by U+FFFD: the client got the reply, so the turn must not be lost,
and in a group-committed batch it must not take the other users' turns down with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.db import create_engine, session_factory
from apps.llm_api.chat_tables import ConversationRow
from apps.llm_api.services.conversations import ConversationStore
from apps.llm_api.services.persistence import Turn, TurnWriter
from apps.llm_api.services.turn_store import TurnRecord
from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.llm_api.test_chat import stored_items


@pytest.fixture
async def engine(llm_api: LlmApi, database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, schema="llm_api")
    yield engine
    await engine.dispose()


def ask(llm_api: LlmApi, token: str, question: str, *, stream: bool) -> tuple[str, dict[str, Any]]:
    """The reply's text as the client reads it, and the new conversation it was stored in."""
    client = llm_api.client(token)
    messages: list[Any] = [{"role": "user", "content": question}]
    extra: dict[str, Any] = {"conversation": {}}
    if not stream:
        completion = client.chat.completions.create(model=FAKE_MODEL, messages=messages, extra_body=extra)
        return completion.choices[0].message.content or "", (completion.model_extra or {})["conversation"]
    chunks = list(
        client.chat.completions.create(model=FAKE_MODEL, messages=messages, stream=True, extra_body=extra)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    found = [(c.model_extra or {}).get("conversation") for c in chunks]
    return text, next(conversation for conversation in found if conversation)


def _reply_text(item: dict[str, Any]) -> str:
    text: str = item["content"][0]["text"]
    return text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_reply_holding_a_nul_is_answered_and_stored_with_it_replaced(
    llm_api: LlmApi, upstream: FakeUpstream, stream: bool
) -> None:
    upstream.enqueue(Reply(content=["before\x00", "after"], finish_reason="stop"))
    token = llm_api.token()
    text, conversation = ask(llm_api, token, "say it", stream=stream)
    assert text == "before\x00after"  # the client reads the model's reply as it was
    question, answer = stored_items(llm_api, token, conversation["id"], 2)
    assert _reply_text(question) == "say it"
    assert _reply_text(answer) == "before\ufffdafter"


async def test_a_turn_holding_a_nul_does_not_fail_the_batch_it_was_committed_in(engine: AsyncEngine) -> None:
    """Two users' turns committed together, one reply holding a NUL and an unpaired surrogate in
    every field the reply fills: one statement stores both, each acknowledged."""
    store = ConversationStore(session_factory(engine))
    statements: list[int] = []
    record = store.record_turns

    async def counting(turns: list[TurnRecord]) -> None:
        statements.append(len(turns))
        await record(turns)

    store.record_turns = counting  # type: ignore[method-assign]
    writer = TurnWriter(store, budget=5.0)

    def turn(user: str, completion: dict[str, Any]) -> Turn:
        conversation = ConversationRow(
            public_id=f"conv_unstorable{user}", user_id=f"unstorable-{user}", metadata_={}
        )
        return Turn(
            conversation, [{"role": "user", "content": f"question of {user}"}], None, completion=completion
        )

    clean = {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}]}
    poisoned = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "a\x00b\ud800c",
                    "tool_calls": [
                        {
                            "id": "call_\x00",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"q": "\x00"}'},
                        }
                    ],
                },
                "finish_reason": "st\x00p",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "note\x00": "x\x00"},
    }
    await asyncio.gather(writer.commit(turn("one", clean)), writer.commit(turn("two", poisoned)))
    assert statements == [2]
    one = await store.get("unstorable-one", "conv_unstorableone")
    two = await store.get("unstorable-two", "conv_unstorabletwo")
    assert one is not None and two is not None
    page = await store.list_items(two, limit=10, after=None, order="asc")
    assert page is not None
    items = page.rows[1:]  # after the question
    assert [(row.type, row.body) for row in items] == [
        ("message", {"content": [{"type": "output_text", "text": "a\ufffdb\ufffdc", "annotations": []}]}),
        ("function_call", {"call_id": "call_\ufffd", "name": "f", "arguments": '{"q": "\ufffd"}'}),
    ]
    first = items[0]
    assert first.finish_reason == "st\ufffdp"
    assert first.usage == {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "total_tokens": 2,
        "note\ufffd": "x\ufffd",
    }
    other = await store.list_items(one, limit=10, after=None, order="asc")
    assert other is not None and [row.body["content"][0]["text"] for row in other.rows] == [
        "question of one",
        "fine",
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_finish_reason_longer_than_its_column_is_stored_cut(
    llm_api: LlmApi, upstream: FakeUpstream, stream: bool
) -> None:
    """An upstream's own finish reason (any string) must not fail the turn either."""
    reason = "provider_specific_" + "x" * 40
    upstream.enqueue(Reply(content="fine", finish_reason=reason))
    token = llm_api.token()
    _, conversation = ask(llm_api, token, "go", stream=stream)
    _, answer = stored_items(llm_api, token, conversation["id"], 2)
    assert _reply_text(answer) == "fine"
