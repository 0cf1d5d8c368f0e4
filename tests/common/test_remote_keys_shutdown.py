"""`RemoteAPIKeyResolver` at shutdown: the app closes it, then the HTTP client it shares.

A fake llm-api on loopback holds its answers until the test lets them go, so each ordering is
forced: a key check in flight across the close, and a feed read in flight across the close."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from apps.common.auth.remote_keys import RemoteAPIKeyResolver
from apps.common.errors import APIError
from tests.harness.server import ServerThread

HOLD_SECONDS = 30.0  # how long the fake waits for the test's go-ahead (a safety bound, not a pace)


@dataclass
class FakeKeyOwner:
    """llm-api's validation endpoint and revocation feed, each answering once `release` says so."""

    validate_arrived: threading.Event = field(default_factory=threading.Event)
    validate_release: threading.Event = field(default_factory=threading.Event)
    feed_arrived: threading.Event = field(default_factory=threading.Event)
    feed_release: threading.Event = field(default_factory=threading.Event)
    feed_reads: int = 0

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/internal/api-keys/validate")
        async def validate() -> dict[str, object]:
            self.validate_arrived.set()
            await asyncio.to_thread(self.validate_release.wait, HOLD_SECONDS)
            return {"subject": "user-1", "issuer": "local", "roles": ["user"]}

        @app.get("/internal/api-keys/revocations")
        async def revocations() -> dict[str, object]:
            self.feed_reads += 1
            self.feed_arrived.set()
            await asyncio.to_thread(self.feed_release.wait, HOLD_SECONDS)
            return {"revoked": [], "ended_guests": [], "until": time.time()}

        return app


@pytest.fixture
def owner() -> Iterator[tuple[FakeKeyOwner, str]]:
    fake = FakeKeyOwner()
    server = ServerThread(fake.app())
    server.start()
    try:
        yield fake, f"{server.url}/internal/api-keys/validate"
    finally:
        fake.validate_release.set()
        fake.feed_release.set()
        server.stop()


def _resolver(url: str, client: httpx.AsyncClient) -> RemoteAPIKeyResolver:
    return RemoteAPIKeyResolver(url=url, client=client, internal_token="internal")


async def test_a_key_check_finishing_after_the_close_starts_no_poller(
    owner: tuple[FakeKeyOwner, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A request's key check in flight while the app shuts down: once it is answered (a valid key),
    nothing goes on to use the client, which is closed next. It used to start the revocation
    poller, whose first read went through the closed client: `RuntimeError`."""
    fake, url = owner
    client = httpx.AsyncClient(timeout=HOLD_SECONDS)
    resolver = _resolver(url, client)
    check = asyncio.create_task(resolver.resolve("sk_in_flight"))
    await asyncio.to_thread(fake.validate_arrived.wait, HOLD_SECONDS)
    await resolver.aclose()  # the app's lifespan ends: the resolver first...
    fake.validate_release.set()
    principal = await check  # the request that was already asking is answered
    assert principal is not None and principal.subject == "user-1"
    await client.aclose()  # ...then the client
    poller = resolver._poller
    if poller is not None:
        await poller  # raised RuntimeError("Cannot send a request, as the client has been closed")
    with pytest.raises(APIError) as refused:  # a check arriving now is told to come back
        await resolver.resolve("sk_late")
    assert refused.value.status_code == 503
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_close_during_a_feed_read_stops_the_poller_quietly(
    owner: tuple[FakeKeyOwner, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The poller is reading the feed (a slow answer) when the app shuts down: `aclose` stops it
    and waits for it before the client closes; nothing is logged as an error."""
    fake, url = owner
    fake.validate_release.set()
    client = httpx.AsyncClient(timeout=HOLD_SECONDS)
    resolver = _resolver(url, client)
    assert await resolver.resolve("sk_cached") is not None  # a valid key cached: the poller follows
    await asyncio.to_thread(fake.feed_arrived.wait, HOLD_SECONDS)
    poller = resolver._poller
    assert poller is not None and not poller.done()
    await resolver.aclose()
    assert poller.done()  # stopped and awaited before the client is closed
    await client.aclose()
    fake.feed_release.set()
    assert fake.feed_reads == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
