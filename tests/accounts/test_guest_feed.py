"""The kit's side of ended guest sessions (`RemoteAPIKeyResolver.guest_ended`), against a fake
llm-api feed: a guest is refused once the feed names it, the first check reads the feed's look-back,
an unreachable feed is a 503 (never a stale yes), and without an internal token nothing is asked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from apps.common.auth.principal import Principal
from apps.common.auth.remote_keys import GUEST_LOOKBACK_SECONDS, RemoteAPIKeyResolver
from apps.common.errors import APIError
from tests.harness.server import serve_fake
from tests.harness.waiting import CLIENT_TIMEOUT


@dataclass
class FakeFeed:
    ended: list[str] = field(default_factory=list)
    status: int = 200
    asked: list[float] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/internal/api-keys/revocations", self._feed, methods=["GET"])

    async def _feed(self, request: Request) -> JSONResponse:
        self.asked.append(float(request.query_params["since"]))
        if self.status != 200:
            return JSONResponse({}, status_code=self.status)
        return JSONResponse({"revoked": [], "until": 1e12, "ended_guests": self.ended})


@pytest.fixture
def feed() -> Iterator[FakeFeed]:
    with serve_fake(FakeFeed()) as fake:
        yield fake


def guest(subject: str) -> Principal:
    return Principal(
        subject=subject, issuer="i", auth_method="jwt", credential="t", roles=frozenset({"guest"})
    )


def resolver(client: httpx.AsyncClient, url: str, token: str | None = "t") -> RemoteAPIKeyResolver:
    return RemoteAPIKeyResolver(url=f"{url}/internal/api-keys/validate", client=client, internal_token=token)


async def test_a_guest_named_by_the_feed_is_ended(feed: FakeFeed) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        keys = resolver(client, feed.url)
        try:
            assert await keys.guest_ended(guest("alive")) is False
            # The first read reaches back far enough to cover every guest token still valid.
            assert feed.asked[0] <= time.time() - GUEST_LOOKBACK_SECONDS + 5
            feed.ended = ["upgraded"]
            await keys._sync_guests()  # what the poller does every quarter second
            assert await keys.guest_ended(guest("upgraded")) is True
            assert await keys.guest_ended(guest("alive")) is False
        finally:
            await keys.aclose()


async def test_an_unreachable_feed_is_a_503_for_guests(feed: FakeFeed) -> None:
    feed.status = 503
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        keys = resolver(client, feed.url)
        try:
            with pytest.raises(APIError) as refused:
                await keys.guest_ended(guest("someone"))
            assert refused.value.status_code == 503
        finally:
            await keys.aclose()


async def test_without_an_internal_token_nothing_is_asked(feed: FakeFeed) -> None:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        keys = resolver(client, feed.url, token=None)
        assert await keys.guest_ended(guest("someone")) is False
        assert feed.asked == []
        await keys.aclose()
