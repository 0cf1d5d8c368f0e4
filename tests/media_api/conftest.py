"""media-api served on loopback against the session's Postgres, moto and JWKS issuer.

What tests import (sample files, `settings_for`, upload helpers) lives in `tests/harness/media.py`.

Two app instances: `media` is configured like a deployment (SSRF guard on, only the fake-DNS name
`public.test` allowed, redirect to presigned GET), `alt` allows loopback remote fetches, streams
content through the service and lets upload reservations expire within a second.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from apps.media_api.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.media import MAX_BYTES, PNG, settings_for
from tests.harness.server import serve


async def fake_dns(host: str, port: int) -> list[str]:
    table = {
        "localhost": ["127.0.0.1", "::1"],
        "evil.test": ["127.0.0.1"],
        "public.test": ["127.0.0.1"],
    }
    if host not in table:
        raise OSError("no such host")
    return table[host]


def build_site() -> FastAPI:
    """A remote web server for remote-URL uploads."""
    site = FastAPI()

    @site.get("/image.png")
    async def image() -> Response:
        return Response(PNG, media_type="application/octet-stream")

    @site.get("/big")
    async def big() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(4 * MAX_BYTES // 1024):
                yield b"\x89PNG" + b"x" * 1020

        return StreamingResponse(body(), media_type="image/png")

    @site.get("/slow")
    async def slow() -> Response:
        await asyncio.sleep(5)
        return Response(PNG, media_type="image/png")

    @site.get("/missing")
    async def missing() -> Response:
        return Response(b"no", status_code=404)

    @site.get("/to-loopback")
    async def to_loopback(port: int) -> RedirectResponse:
        return RedirectResponse(f"http://127.0.0.1:{port}/image.png")

    return site


@pytest.fixture(scope="session")
def site() -> Iterator[int]:
    with serve(build_site()) as server:
        yield server.port


@pytest.fixture(scope="session")
def media_url(database_url: str, s3_endpoint: str, issuer: TestIssuer) -> Iterator[str]:
    with serve(create_app(settings_for(database_url, s3_endpoint, issuer), dns=fake_dns)) as server:
        yield server.url


@pytest.fixture(scope="session")
def alt_url(database_url: str, s3_endpoint: str, issuer: TestIssuer) -> Iterator[str]:
    settings = settings_for(
        database_url,
        s3_endpoint,
        issuer,
        media_remote_fetch_allow=("127.0.0.0/8",),
        media_proxy_download=True,
        media_s3_presign_ttl=1,
        media_reservation_grace_seconds=0,
        media_cleanup_interval_seconds=0.2,
    )
    with serve(create_app(settings)) as server:
        yield server.url


@pytest.fixture
async def alice(media_url: str, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(media_url, issuer, f"alice-{uuid.uuid4().hex[:8]}") as client:
        yield client


@pytest.fixture
async def bob(media_url: str, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(media_url, issuer, f"bob-{uuid.uuid4().hex[:8]}") as client:
        yield client


@pytest.fixture
async def alt(alt_url: str, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(alt_url, issuer, f"carol-{uuid.uuid4().hex[:8]}") as client:
        yield client


def _client(base_url: str, issuer: TestIssuer, user: str) -> httpx.AsyncClient:
    token = issuer.mint(user)
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
async def web() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client, as a browser talking to presigned URLs."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client
