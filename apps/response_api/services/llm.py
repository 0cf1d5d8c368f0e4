"""The llm-api client: OpenAI chat completions over HTTP, always streamed.

Every model round streams (`stream: true`, usage included), whether or not the caller streams: text
deltas can then be relayed as they arrive, and a non-streamed response simply ignores them. The
caller's own credentials go with each request, so llm-api applies the caller's limits and models.
Chunks are decoded incrementally and only the fields the loop needs are read; a chunk that is not
the JSON object it should be fails the round as an upstream error (`bad_upstream_response`, 502),
not as a failure of this server.

The client is aiohttp, not the kit's httpx (see `apps.common.http`): this is the token path, and
httpx with its instrumentation cost ~2 ms of CPU per round. Trace context goes along by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from opentelemetry.propagate import inject

from apps.common.sse import decode_events
from apps.common.storable import dumps, loads, storable


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    call_id: str | None
    name: str | None
    arguments: str


@dataclass(slots=True)
class RoundEnd:
    finish_reason: str | None
    usage: dict[str, Any] | None


ModelEvent = TextDelta | ToolCallDelta | RoundEnd

# The code of a response failed because llm-api's stream could not be read.
MALFORMED = "bad_upstream_response"


class LlmApiError(Exception):
    """llm-api refused or failed the request; `status` is its HTTP status (502 when unreachable)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class LlmClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self._http = http
        self._url = f"{base_url.rstrip('/')}/v1/chat/completions"

    async def stream(self, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[ModelEvent]:
        """One model round as events; ends with exactly one `RoundEnd`."""
        payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
        sent = {**headers, "Content-Type": "application/json"}
        inject(sent)
        try:
            response = await self._http.post(self._url, data=dumps(payload), headers=sent)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LlmApiError(502, f"llm-api is unreachable: {exc.__class__.__name__}") from exc
        try:
            if response.status != 200:
                raise await _error(response)
            finish: str | None = None
            usage: dict[str, Any] | None = None
            # Read to the end of the body even after `[DONE]`, so the connection goes back to the pool.
            async for event in decode_events(response.content.iter_any()):
                if event.data == "[DONE]":
                    continue
                try:
                    chunk = _parse(event.data)
                    if chunk.get("error"):
                        raise LlmApiError(502, str(chunk["error"].get("message", "model error")))
                    usage = chunk.get("usage") or usage
                    model_events: list[ModelEvent] = []
                    for choice in chunk.get("choices") or ():
                        finish = choice.get("finish_reason") or finish
                        model_events.extend(_deltas(choice.get("delta") or {}))
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
                    raise LlmApiError(
                        502, f"llm-api sent a malformed stream chunk: {event.data[:200]!r}", MALFORMED
                    ) from exc
                for model_event in model_events:
                    yield model_event
            yield RoundEnd(finish, usage)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LlmApiError(502, f"llm-api stream broke off: {exc.__class__.__name__}") from exc
        finally:
            # Back to the pool when the body was read to its end; otherwise the connection is closed.
            response.release()


def _parse(data: str) -> Any:
    """A chunk, its text made storable: it is stored with the response (`apps.common.storable`).
    Only a chunk with a NUL or surrogate escape can need it (a surrogate one is rare: `loads`)."""
    chunk = loads(data)
    return storable(chunk) if "\\u0000" in data or "\\ud" in data or "\\uD" in data else chunk


def _deltas(delta: dict[str, Any]) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    if delta.get("content"):
        events.append(TextDelta(delta["content"]))
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        events.append(
            ToolCallDelta(
                index=int(call.get("index", 0)),
                call_id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return events


async def _error(response: aiohttp.ClientResponse) -> LlmApiError:
    body = await response.read()
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    error = storable(error)  # a provider's words may reach the stored response's `error`
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return LlmApiError(response.status, message or f"llm-api answered {response.status}", code)
