"""Calls to a provider's `/chat/completions`, with the one retry that is always safe.

A request is retried once when it failed before any response byte arrived: the connection could not
be opened, or broke (typically a pooled connection the upstream was closing) before a response
started, or the upstream answered 502/503/504 (a proxy in front of the model refusing it). Nothing
has been sent to our client at that point, so a retry is invisible. Timeouts while waiting for the
model are not retried, since the model may be generating.
"""

from __future__ import annotations

import logging

import httpx
import orjson

from apps.common.errors import APIError
from apps.llm_api.providers.registry import ModelRoute

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({502, 503, 504})
_RETRY_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.PoolTimeout,
)


async def open_chat(client: httpx.AsyncClient, route: ModelRoute, body: bytes) -> httpx.Response:
    """Send the request and return the response with its body still unread (the caller closes it)."""
    headers = {"content-type": "application/json", "accept-encoding": "identity", **route.provider.headers}
    for attempt in (1, 2):
        request = client.build_request("POST", route.provider.chat_url, content=body, headers=headers)
        try:
            response = await client.send(request, stream=True)
        except _RETRY_ERRORS as exc:
            if attempt == 1:
                log.info("retrying upstream", extra={"provider": route.provider.name, "error": repr(exc)})
                continue
            raise upstream_unreachable(route, exc) from exc
        except httpx.TimeoutException as exc:
            raise APIError(
                504, f"The model provider '{route.provider.name}' timed out.", code="upstream_timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise upstream_unreachable(route, exc) from exc
        if response.status_code in _RETRY_STATUSES and attempt == 1:
            await response.aclose()
            log.info(
                "retrying upstream", extra={"provider": route.provider.name, "status": response.status_code}
            )
            continue
        return response
    raise AssertionError("unreachable")


def upstream_unreachable(route: ModelRoute, exc: Exception) -> APIError:
    return APIError(
        502,
        f"The model provider '{route.provider.name}' could not be reached ({type(exc).__name__}).",
        code="upstream_unavailable",
    )


def upstream_failure(route: ModelRoute, status: int, body: bytes) -> APIError:
    """Our answer to an upstream error status: the caller's fault stays a 4xx, the rest is a 502."""
    message = _upstream_message(body)
    name = route.provider.name
    if status in (400, 413, 422):
        return APIError(
            400, f"The model provider rejected the request: {message}", code="upstream_bad_request"
        )
    if status == 429:
        return APIError(
            429, f"The model provider '{name}' is rate limiting: {message}", code="upstream_rate_limited"
        )
    return APIError(502, f"The model provider '{name}' answered {status}: {message}", code="upstream_error")


def _upstream_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace") or "no details"
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])[:500]
    return body[:300].decode("utf-8", "replace")
