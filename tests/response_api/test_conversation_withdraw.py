"""llm-api's `DELETE /internal/conversations/{id}?key=...`: response-api withdraws a new conversation
it made for a response that was then not stored (the client got an error and never learned its id).

Only a conversation holding nothing but that response's append (or nothing at all) goes; one with
anything else in it stays (409); a missing one, or another user's, is already withdrawn (204).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from apps.response_api.services.conversations import new_conversation_id
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import INTERNAL_TOKEN, Peers
from tests.harness.waiting import CLIENT_TIMEOUT


def message(item_id: str, role: str, text: str) -> dict[str, Any]:
    kind = "input_text" if role == "user" else "output_text"
    return {"id": item_id, "type": "message", "role": role, "content": [{"type": kind, "text": text}]}


async def test_a_withdrawn_conversation_goes_only_with_nothing_but_its_response_in_it(
    peers: Peers, issuer: TestIssuer, llm: AsyncOpenAI, other_llm: AsyncOpenAI
) -> None:
    def headers(user: str, key: str | None = None) -> dict[str, str]:
        sent = {"Authorization": f"Bearer {issuer.mint(user)}", "X-Internal-Token": INTERNAL_TOKEN}
        return sent | ({"Idempotency-Key": key} if key else {})

    empty, answered, extended = (new_conversation_id() for _ in range(3))
    async with httpx.AsyncClient(base_url=peers.llm_api_url, timeout=CLIENT_TIMEOUT) as http:

        async def make(conversation: str, key: str, items: list[dict[str, Any]]) -> None:
            made = await http.post(
                f"/internal/conversations/{conversation}/items?create=true",
                json={"items": items},
                headers=headers("alice", key),
            )
            assert made.status_code == 200, made.text

        async def withdraw(conversation: str, key: str, user: str = "alice") -> httpx.Response:
            return await http.delete(
                f"/internal/conversations/{conversation}", params={"key": key}, headers=headers(user)
            )

        await make(empty, empty, [])
        answer = [message("msg_wq1", "user", "Q"), message("msg_wa1", "assistant", "A")]
        await make(answered, "resp_withdraw1", answer)
        await make(extended, "resp_withdraw2", [message("msg_wq2", "user", "Q")])
        await make(extended, "resp_withdraw3", [message("msg_wq3", "user", "Q again")])

        by_other = await withdraw(answered, "resp_withdraw1", user="mallory")
        assert by_other.status_code == 204  # not theirs: nothing of theirs to withdraw
        assert (await llm.conversations.retrieve(answered)).id == answered

        assert (await withdraw(empty, "resp_any")).status_code == 204
        assert (await withdraw(answered, "resp_withdraw1")).status_code == 204
        kept = await withdraw(extended, "resp_withdraw2")
        assert kept.status_code == 409 and kept.json()["error"]["code"] == "conflict", kept.text
        again = await withdraw(answered, "resp_withdraw1")
        assert again.status_code == 204  # idempotent: a retry after a lost answer
        unauthenticated = await http.delete(
            f"/internal/conversations/{extended}",
            params={"key": "resp_withdraw2"},
            headers={"Authorization": f"Bearer {issuer.mint('alice')}"},
        )
        assert unauthenticated.status_code == 403
        no_key = await http.delete(f"/internal/conversations/{extended}", headers=headers("alice"))
        assert no_key.status_code == 400

    for gone in (empty, answered):
        with pytest.raises(openai.NotFoundError):
            await llm.conversations.retrieve(gone)
    assert (await llm.conversations.retrieve(extended)).id == extended
    with pytest.raises(openai.NotFoundError):
        await other_llm.conversations.retrieve(extended)
