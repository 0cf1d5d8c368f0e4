"""`data:<mime>;jan_<id>` placeholders in messages, resolved through media-api before inference.

Only requests that contain a placeholder pay for this: a substring test on the raw body decides. The
messages go to media-api's `POST /v1/media/resolve` as `{"payload": {"messages": [...]}}` with the
caller's own credentials (media-api enforces who may read what) and come back with every placeholder
replaced by a presigned URL. Placeholders never reach a model: an unknown id is the caller's 400, and
media-api being unreachable, slow or confused is a 502.

The call goes over the kit's aiohttp session (`apps.common.http`), as chat completions do: through
the instrumented httpx client it cost llm-api ~1.4 ms of CPU, more than media-api's whole answer.
The trace context is passed by hand.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from opentelemetry.propagate import inject

from apps.common.errors import APIError
from apps.common.http import transport_failure
from apps.common.storable import dumps, loads

PLACEHOLDER = re.compile(r"data:([a-z]+/[a-z0-9.+-]+);(jan_[A-Za-z0-9]+)")
_MARKER = b";jan_"


def has_placeholder(raw_body: bytes) -> bool:
    return _MARKER in raw_body


class MediaResolver:
    def __init__(self, session: aiohttp.ClientSession, url: str | None, timeout: float) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def resolve(self, messages: list[dict[str, Any]], headers: dict[str, str]) -> list[dict[str, Any]]:
        if not PLACEHOLDER.search(dumps(messages).decode()):
            return messages
        if not self._url:
            raise APIError(
                502, "Media ids cannot be resolved: no media service is configured.", code="media_unavailable"
            )
        sent = {**headers, "Content-Type": "application/json"}
        inject(sent)
        body = dumps({"payload": {"messages": messages}})
        try:
            async with self._session.post(
                self._url, data=body, headers=sent, timeout=self._timeout
            ) as response:
                status, content = response.status, await response.read()
        except Exception as exc:
            failure = transport_failure(exc)
            if failure is None:
                raise
            if failure == "timeout":
                raise APIError(
                    502, "The media service did not answer in time.", code="media_timeout"
                ) from exc
            raise APIError(
                502,
                f"The media service could not be reached ({type(exc).__name__}).",
                code="media_unavailable",
            ) from exc
        if status in (400, 403, 404):
            raise APIError(
                400,
                f"A media id in the messages cannot be used: {_message(content)}",
                param="messages",
                code="media_not_found",
            )
        if status != 200:
            raise APIError(502, f"The media service answered {status}.", code="media_resolve_failed")
        resolved = _messages(content)
        if resolved is None or PLACEHOLDER.search(dumps(resolved).decode()):
            raise APIError(502, "The media service returned an unusable answer.", code="media_resolve_failed")
        return resolved


def _json(content: bytes) -> Any:
    try:
        return loads(content)
    except ValueError:
        return None


def _messages(content: bytes) -> list[dict[str, Any]] | None:
    answer = _json(content)
    payload = answer.get("payload") if isinstance(answer, dict) else None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return None
    return messages


def _message(content: bytes) -> str:
    answer = _json(content)
    text = content[:200].decode(errors="replace")
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(error)[:200] if error else text
