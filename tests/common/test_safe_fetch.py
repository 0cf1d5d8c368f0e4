"""The SSRF guard shared by media-api's remote uploads and mcp-tools' scrape."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from apps.common.errors import APIError
from apps.common.safe_fetch import FetchPolicy, SafeFetcher, is_public_address
from apps.gateway.embedded import free_port
from tests.harness.server import serve
from tests.harness.ssrf import UNSAFE_URLS, fake_dns


def build_site() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> Response:
        return Response(b"hello", media_type="text/plain")

    @app.get("/to-loopback")
    async def to_loopback(port: int) -> RedirectResponse:
        return RedirectResponse(f"http://127.0.0.1:{port}/ok")

    @app.get("/to-metadata")
    async def to_metadata() -> RedirectResponse:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/")

    @app.get("/loop")
    async def loop() -> RedirectResponse:
        return RedirectResponse("/loop")

    @app.get("/big")
    async def big() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        return StreamingResponse(body())

    @app.get("/slow")
    async def slow() -> Response:
        await asyncio.sleep(5)
        return Response(b"late")

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[int]:
    with serve(build_site()) as server:
        yield server.port


@pytest.mark.parametrize("url", UNSAFE_URLS)
async def test_private_and_odd_targets_are_refused(url: str) -> None:
    fetcher = SafeFetcher(FetchPolicy(), resolver=fake_dns)
    with pytest.raises(APIError) as caught:
        await fetcher.get(url)
    assert caught.value.status_code == 400


async def test_redirect_to_loopback_is_refused(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("public.test",)), resolver=fake_dns)
    with pytest.raises(APIError, match="non-public"):
        await fetcher.get(f"http://public.test:{site}/to-loopback?port={site}")


async def test_redirect_to_metadata_is_refused(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("public.test",)), resolver=fake_dns)
    with pytest.raises(APIError, match="non-public"):
        await fetcher.get(f"http://public.test:{site}/to-metadata")


async def test_allow_list_lets_a_loopback_test_server_through(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.0/8",)))
    fetched = await fetcher.get(f"http://127.0.0.1:{site}/ok")
    assert fetched.content == b"hello" and fetched.content_type == "text/plain"


async def test_pinned_connection_keeps_the_host_header(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("public.test",)), resolver=fake_dns)
    fetched = await fetcher.get(f"http://public.test:{site}/ok")
    assert fetched.content == b"hello" and fetched.url == f"http://public.test:{site}/ok"


async def test_redirect_limit(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.0/8",), max_redirects=3))
    with pytest.raises(APIError, match="redirects too many"):
        await fetcher.get(f"http://127.0.0.1:{site}/loop")


async def test_body_over_the_limit_is_cut(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.0/8",), max_bytes=10_000))
    with pytest.raises(APIError) as caught:
        await fetcher.get(f"http://127.0.0.1:{site}/big")
    assert caught.value.status_code == 413


async def test_slow_server_times_out(site: int) -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.0/8",), timeout_seconds=0.5))
    with pytest.raises(APIError) as caught:
        await fetcher.get(f"http://127.0.0.1:{site}/slow")
    assert caught.value.status_code == 504


def test_public_address_classification() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:4700::1111"))
    for private in ("2002:7f00:1::", "64:ff9b::7f00:1", "::127.0.0.1", "ff02::1", "224.0.0.1", "fe80::1"):
        assert not is_public_address(ipaddress.ip_address(private)), private


async def test_connection_failure_is_a_502() -> None:
    fetcher = SafeFetcher(FetchPolicy(allow=("127.0.0.0/8",)))
    with pytest.raises(APIError) as caught:
        await fetcher.get(f"http://127.0.0.1:{free_port()}/")
    assert caught.value.status_code == 502 and caught.value.code == "fetch_failed"
