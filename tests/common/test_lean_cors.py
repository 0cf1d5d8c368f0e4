"""`LeanCORSMiddleware` (apps/common/middleware.py) answers exactly as Starlette's CORS middleware does.

Both wrap the same app, get the same requests, and their sent messages are compared as they are:
requests without an `Origin` (the lean path: `Vary: Origin` merged as Starlette merges it), with an
allowed or a refused origin, and preflights (Starlette's own code).
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from apps.common.cors import CORS
from apps.common.middleware import LeanCORSMiddleware

Headers = list[tuple[bytes, bytes]]


def inner(response_headers: Headers) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(response_headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def sent(
    kind: type[CORSMiddleware], request_headers: Headers, response_headers: Headers, method: str
) -> list[Message]:
    middleware = kind(
        inner(response_headers),
        allow_origins=["https://app.example"],
        allow_methods=list(CORS.methods),
        allow_headers=list(CORS.headers),
        expose_headers=list(CORS.exposed_headers),
        allow_credentials=CORS.credentials,
        max_age=CORS.max_age_seconds,
    )
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "http", "method": method, "path": "/v1/models", "headers": request_headers}
    await middleware(scope, receive, send)
    return messages


ORIGIN = [(b"origin", b"https://app.example")]
PREFLIGHT = [*ORIGIN, (b"access-control-request-method", b"POST")]


@pytest.mark.parametrize(
    "request_headers, method",
    [
        ([], "POST"),
        ([(b"authorization", b"Bearer x")], "GET"),
        (ORIGIN, "POST"),
        ([(b"origin", b"https://elsewhere.example")], "GET"),
        (PREFLIGHT, "OPTIONS"),
        ([(b"origin", b"https://elsewhere.example"), (b"access-control-request-method", b"POST")], "OPTIONS"),
    ],
)
@pytest.mark.parametrize(
    "response_headers",
    [
        [(b"content-type", b"application/json")],
        [(b"vary", b"Accept-Encoding"), (b"content-type", b"application/json")],
        [(b"vary", b"Accept"), (b"content-type", b"application/json"), (b"vary", b"Cookie")],
    ],
)
async def test_the_same_messages_as_starlettes(
    request_headers: Headers, method: str, response_headers: Headers
) -> None:
    expected = await sent(CORSMiddleware, request_headers, response_headers, method)
    assert await sent(LeanCORSMiddleware, request_headers, response_headers, method) == expected
