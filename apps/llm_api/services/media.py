"""`data:<mime>;jan_<id>` placeholders in messages, resolved through media-api before inference.

Only requests that contain a placeholder pay for this: a substring test on the raw body decides. The
messages go to media-api's `POST /v1/media/resolve` as `{"payload": {"messages": [...]}}` with the
caller's own credentials (media-api enforces who may read what) and come back with every placeholder
replaced by a presigned URL. Placeholders never reach a model: an unknown id is the caller's 400, and
media-api being unreachable, slow or confused is a 502.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson

from apps.common.errors import APIError

PLACEHOLDER = re.compile(r"data:([a-z]+/[a-z0-9.+-]+);(jan_[A-Za-z0-9]+)")
_MARKER = b";jan_"


def has_placeholder(raw_body: bytes) -> bool:
    return _MARKER in raw_body


class MediaResolver:
    def __init__(self, client: httpx.AsyncClient, url: str | None, timeout: float) -> None:
        self._client = client
        self._url = url
        self._timeout = timeout

    async def resolve(self, messages: list[dict[str, Any]], headers: dict[str, str]) -> list[dict[str, Any]]:
        if not PLACEHOLDER.search(orjson.dumps(messages).decode()):
            return messages
        if not self._url:
            raise APIError(
                502, "Media ids cannot be resolved: no media service is configured.", code="media_unavailable"
            )
        try:
            response = await self._client.post(
                self._url, json={"payload": {"messages": messages}}, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException as exc:
            raise APIError(502, "The media service did not answer in time.", code="media_timeout") from exc
        except httpx.HTTPError as exc:
            raise APIError(
                502,
                f"The media service could not be reached ({type(exc).__name__}).",
                code="media_unavailable",
            ) from exc
        if response.status_code in (400, 403, 404):
            raise APIError(
                400,
                f"A media id in the messages cannot be used: {_message(response)}",
                param="messages",
                code="media_not_found",
            )
        if response.status_code != 200:
            raise APIError(
                502, f"The media service answered {response.status_code}.", code="media_resolve_failed"
            )
        resolved = _messages(response)
        if resolved is None or PLACEHOLDER.search(orjson.dumps(resolved).decode()):
            raise APIError(502, "The media service returned an unusable answer.", code="media_resolve_failed")
        return resolved


def _messages(response: httpx.Response) -> list[dict[str, Any]] | None:
    try:
        payload = response.json().get("payload")
    except (ValueError, AttributeError):
        return None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return None
    return messages


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:200]
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(error)[:200] if error else response.text[:200]
