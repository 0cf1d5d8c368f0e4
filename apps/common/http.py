"""Outbound HTTP: the one way apps build clients, and the one place that says which stack is where.

Three HTTP client stacks run in the apps, each where something outside our taste decides it:

- **httpx** (`make_client` below) is the default, for every service-to-service call: API-key checks,
  conversations, model lists, safe fetches, S3-less uploads. It is the stack the
  OpenTelemetry instrumentation wraps (`Telemetry.instrument_httpx`), and one client per purpose is
  built in each lifespan.
- **aiohttp** (`make_session` below) carries the hot paths: llm-api's chat completions to a model
  provider (`apps/llm_api/providers/upstream.py`), the token path, llm-api's media resolution, and
  response-api's calls to llm-api (its model rounds and the conversation appends). Measured on the
  dev machine (uvloop, loopback): httpx costs ~0.67 ms of CPU per request and ~0.22 ms per streamed
  chunk read, aiohttp ~0.14 ms and ~0.10 ms (its HTTP parser is C); on the 2-core CI VM, httpx with
  its OpenTelemetry instrumentation 2.1 ms per request, aiohttp 0.32 ms. No instrumentation wraps
  these sessions: callers propagate trace context by hand (`traceparent`, `propagate.inject`).
  One call skips even aiohttp: llm-api's chat completion (streamed or not) from a plain `http://`
  provider goes through `apps/llm_api/providers/plain_http.PlainPool` (an asyncio protocol over
  httptools' parser, ~25 µs of CPU per round trip against aiohttp's ~170), with the same timeouts
  and pool bounds; its failures are built-in exceptions `transport_failure` already classifies.
- **httpx2** is what the MCP SDK (2.x) speaks: `streamable_http_client` takes an `httpx2.AsyncClient`,
  so response-api's MCP sessions to mcp-tools and mcp-tools' calls to configured MCP providers use it.
  It is a dependency, not a choice; nothing else should.

A failure on the wire is classified by one function, `transport_failure`, whichever stack raised it,
so the apps answer a timeout, an unreachable peer and a connection lost halfway alike (504 for a
timeout, 502/503 for the rest, as each caller documents).
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Literal

import aiohttp
import httpx
import httpx2

DEFAULT_CONNECT_TIMEOUT = 5.0
# Idle pooled connections are dropped below the usual server keep-alive (uvicorn's, hence every app's
# and vLLM's: 5 s), so a pooled connection is never one the server is closing as a request goes out.
DEFAULT_KEEPALIVE = 4.0


TransportFailure = Literal["timeout", "unreachable", "disconnected"]


def transport_failure(exc: BaseException) -> TransportFailure | None:
    """What went wrong on the wire, for an error from httpx, httpx2 or aiohttp; None when `exc` is
    not a transport failure (an error status, a bad URL, a bug), which callers raise as it is.

    `timeout`: the peer did not answer in time (connect, read or write); `unreachable`: no
    connection could be opened; `disconnected`: the connection broke after it was opened.
    """
    # aiohttp's read timeout is also a connection error, and asyncio's TimeoutError an OSError:
    # timeouts first.
    if isinstance(exc, TimeoutError | httpx.TimeoutException | httpx2.TimeoutException):
        return "timeout"
    if isinstance(
        exc, httpx.ConnectError | httpx2.ConnectError | aiohttp.ClientConnectorError | ConnectionRefusedError
    ):
        return "unreachable"
    if isinstance(exc, httpx.TransportError | httpx2.TransportError | ConnectionError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientError) and not isinstance(
        exc, aiohttp.ClientResponseError | aiohttp.InvalidURL
    ):
        return "disconnected"  # connection lost, payload cut short, server disconnected
    return None


def make_session(
    *,
    read_timeout: float | None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = 200,
    keepalive: float = DEFAULT_KEEPALIVE,
    decompress: bool = True,
) -> aiohttp.ClientSession:
    """An `aiohttp.ClientSession` for a hot path: no total timeout, a limit on each silence while
    reading (`read_timeout`, None for none). `decompress=False` hands bodies on as they came (a relay)."""
    connector = aiohttp.TCPConnector(
        limit=max_connections, keepalive_timeout=keepalive, enable_cleanup_closed=True
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
    # A session is shared by every user's requests: an upstream's cookie is never kept.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=decompress,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def make_client(
    *,
    timeout: float | None = 30.0,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    base_url: str = "",
    max_connections: int = 200,
    max_keepalive: int = 50,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every timeout is stated (`timeout=None` means reads may wait forever)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive),
        headers=headers,
        follow_redirects=follow_redirects,
        # Shared by every user: no domain may set or be sent a cookie, so one user's cookie (set by a
        # peer or a provider) never rides on another user's request.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )
