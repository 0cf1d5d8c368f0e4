"""A `/v1/responses` client for fault suites: each response's outcome as read off the wire.

`create` runs one response (plain, streamed or background) and records what the client was told:
acknowledged with a status (a plain 200, a stream's terminal `response.*` event, a background
response's ending once polled) or refused with an error (a 4xx/5xx, or the stream's `error` event).
`assert_none_acknowledged_and_lost` then reads every response back through the public API.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from apps.common.sse import aiter_events

KINDS = ("plain", "stream", "background")
RUNNING = ("queued", "in_progress")


@dataclass
class Outcome:
    kind: str
    id: str | None = None
    acknowledged: bool = False
    status: str | None = None  # the response status the client was given at its end
    http_status: int = 0
    error: dict[str, Any] | None = None
    retry_after: str | None = None
    text: str = ""
    text_done: threading.Event = field(default_factory=threading.Event)
    output_types: list[str] = field(default_factory=list)
    output_ids: list[str] = field(default_factory=list)
    response_error: dict[str, Any] | None = None  # the `error` of the response the client was given


async def create(http: httpx.AsyncClient, outcome: Outcome, body: dict[str, Any]) -> Outcome:
    """Run one response of `outcome.kind` with `body` (which names the model)."""
    if outcome.kind == "stream":
        return await _stream(http, outcome, {**body, "stream": True})
    response = await http.post("/v1/responses", json={**body, "background": outcome.kind == "background"})
    outcome.http_status = response.status_code
    payload = response.json()
    if response.status_code != 200:
        outcome.error = payload["error"]
        outcome.retry_after = response.headers.get("retry-after")
        return outcome
    outcome.id = payload["id"]
    if outcome.kind == "plain":
        _ended(outcome, payload)
    return outcome


def _ended(outcome: Outcome, response: dict[str, Any]) -> None:
    outcome.acknowledged = True
    outcome.status = response["status"]
    outcome.output_types = [item["type"] for item in response["output"]]
    outcome.output_ids = [item["id"] for item in response["output"]]
    outcome.response_error = response.get("error")


async def _stream(http: httpx.AsyncClient, outcome: Outcome, body: dict[str, Any]) -> Outcome:
    async with http.stream("POST", "/v1/responses", json=body) as response:
        outcome.http_status = response.status_code
        if response.status_code != 200:
            outcome.error = orjson.loads(await response.aread())["error"]
            return outcome
        async for sse in aiter_events(response):
            event = sse.json()
            assert not outcome.acknowledged, "nothing may follow the terminal event"
            kind = event["type"]
            if kind == "response.created":
                outcome.id = event["response"]["id"]
            elif kind == "response.output_text.delta":
                outcome.text += event["delta"]
            elif kind == "response.output_text.done":
                outcome.text_done.set()
            elif kind == "error":
                outcome.error = event
            elif kind in ("response.completed", "response.failed", "response.incomplete"):
                _ended(outcome, event["response"])
    return outcome


async def poll(http: httpx.AsyncClient, outcome: Outcome) -> None:
    """A background response's end, as a polling client reads it."""
    while True:
        response = await http.get(f"/v1/responses/{outcome.id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] not in RUNNING:
            _ended(outcome, response.json())
            return
        await asyncio.sleep(0.05)


async def assert_none_acknowledged_and_lost(http: httpx.AsyncClient, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        stored = await http.get(f"/v1/responses/{outcome.id}") if outcome.id else None
        if outcome.acknowledged:
            assert stored is not None and stored.status_code == 200, (outcome, stored)
            body = stored.json()
            assert body["status"] == outcome.status, (outcome, body)
            assert [item["type"] for item in body["output"]] == outcome.output_types
        else:
            assert outcome.error is not None, f"the client was told nothing: {outcome}"
            assert stored is None or stored.status_code == 404, (outcome, stored and stored.text)
