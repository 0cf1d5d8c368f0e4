"""Calls to a provider's `/chat/completions`: aiohttp, with the one retry that is always safe.

Why aiohttp here when the rest of the platform uses httpx: this is the token path (measured, see
`apps.common.http`, which also classifies its errors). LiteLLM made the same switch for the same
reason. A completion from a plain `http://` provider, streamed or not, goes through `PlainPool`
instead (`plain_http.py`: a fraction of aiohttp's CPU per round trip). Trace context is
propagated by hand (`traceparent`), since no instrumentation wraps these clients, and our request
id goes along as `X-Request-Id`.

A request is retried once when it failed before any response byte arrived: the connection could not
be opened, or broke (typically a pooled connection the upstream was closing) before a response
started, or the upstream answered 502/503/504 (a proxy in front of the model refusing it). Nothing
has been sent to our client at that point, so a retry is invisible. Timeouts while waiting for the
model are not retried, since the model may be generating.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
from opentelemetry.propagate import inject

from apps.common.errors import APIError
from apps.common.http import transport_failure
from apps.common.logs import request_id_var
from apps.llm_api.providers.plain_http import PlainPool, PlainResponse
from apps.llm_api.providers.registry import ModelRoute

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({502, 503, 504})


class StreamBroken(Exception):
    """The upstream stream ended abnormally; `code` and `message` are for the client's error event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Upstream:
    """The clients to model providers: `plain` for http://, aiohttp for the rest (TLS)."""

    session: aiohttp.ClientSession
    plain: PlainPool


class UpstreamResponse:
    """An upstream answer whose body has not been read yet. `close()` drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse | PlainResponse) -> None:
        self._response = response
        self.status = response.status

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except Exception as exc:
            failure = transport_failure(exc)
            if failure == "timeout":
                raise APIError(504, "The model did not answer in time.", code="upstream_timeout") from exc
            if failure is None:
                raise
            raise APIError(
                502, "The connection to the model was lost.", code="upstream_disconnected"
            ) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in whatever pieces the network delivers."""
        response = self._response
        pieces = response.chunks() if isinstance(response, PlainResponse) else response.content.iter_any()
        try:
            async for chunk in pieces:
                yield chunk
        except Exception as exc:
            failure = transport_failure(exc)
            if failure == "timeout":
                message = "The model stopped sending tokens (timed out)."
                raise StreamBroken("upstream_timeout", message) from exc
            if failure is None:
                raise
            raise StreamBroken(
                "upstream_disconnected", "The connection to the model was lost mid-stream."
            ) from exc

    def ended(self) -> bool:
        """Whether the whole body has arrived and been read (nothing more will come)."""
        response = self._response
        if isinstance(response, PlainResponse):
            return response.ended
        return response.content.at_eof()

    def close(self) -> None:
        self._response.close()


async def open_chat(upstream: Upstream, route: ModelRoute, body: bytes, *, stream: bool) -> UpstreamResponse:
    """Send the request; the caller reads the body (`stream`: in chunks) and closes the response."""
    headers = {"content-type": "application/json", "accept-encoding": "identity", **route.provider.headers}
    inject(headers)
    request_id = request_id_var.get()
    if request_id:  # lets a provider's logs be matched with ours
        headers["x-request-id"] = request_id
    url = route.provider.chat_url
    plain = upstream.plain.serves(url)
    for attempt in (1, 2):
        try:
            response: aiohttp.ClientResponse | PlainResponse
            if plain:
                response = await upstream.plain.post(url, body, headers, stream=stream)
            else:
                response = await upstream.session.post(url, data=body, headers=headers)
        except Exception as exc:
            failure = transport_failure(exc)
            if failure == "timeout":
                raise APIError(
                    504, f"The model provider '{route.provider.name}' timed out.", code="upstream_timeout"
                ) from exc
            if failure is not None and attempt == 1:  # nothing reached the model: always safe
                log.info("retrying upstream", extra={"provider": route.provider.name, "error": repr(exc)})
                continue
            if failure is not None or isinstance(exc, aiohttp.ClientError):
                raise upstream_unreachable(route, exc) from exc
            raise
        if response.status in _RETRY_STATUSES and attempt == 1:
            response.close()
            log.info("retrying upstream", extra={"provider": route.provider.name, "status": response.status})
            continue
        return UpstreamResponse(response)
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
            400,
            f"The model provider rejected the request: {message}",
            param=_upstream_param(body),
            code="upstream_bad_request",
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


def _upstream_param(body: bytes) -> str | None:
    """The request field an upstream 4xx blames: OpenAI's `error.param`, or a FastAPI-style `detail`."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("param"), str) and error["param"]:
        return str(error["param"])
    detail = parsed.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(part) for part in detail[0].get("loc", ()) if part != "body"]
        return ".".join(loc) or None
    return None
