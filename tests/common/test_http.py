"""One classification of wire failures for the three HTTP stacks (`apps.common.http.transport_failure`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
import httpx2
import pytest
from aiohttp import web

from apps.common.http import make_client, make_session, transport_failure
from apps.gateway.embedded import free_port
from tests.harness.waiting import CLIENT_TIMEOUT


async def _refused_by_each_stack() -> list[BaseException]:
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    caught: list[BaseException] = []
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        with pytest.raises(httpx.HTTPError) as first:
            await client.get(url)
        caught.append(first.value)
    async with httpx2.AsyncClient() as client2:
        with pytest.raises(httpx2.HTTPError) as second:
            await client2.get(url)
        caught.append(second.value)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError) as third:
            await session.get(url)
        caught.append(third.value)
    return caught


async def test_a_refused_connection_is_unreachable_whichever_stack_saw_it() -> None:
    assert [transport_failure(exc) for exc in await _refused_by_each_stack()] == ["unreachable"] * 3


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), httpx.ReadTimeout("slow"), httpx2.ConnectTimeout("slow"), aiohttp.ServerTimeoutError()],
)
def test_timeouts(exc: BaseException) -> None:
    assert transport_failure(exc) == "timeout"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.RemoteProtocolError("cut"),
        httpx2.ReadError("cut"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("short"),
        ConnectionResetError(),
    ],
)
def test_lost_connections(exc: BaseException) -> None:
    assert transport_failure(exc) == "disconnected"


@pytest.mark.parametrize("exc", [ValueError("bug"), aiohttp.InvalidURL("nope"), httpx.DecodingError("gzip")])
def test_what_is_not_the_wire_is_left_to_the_caller(exc: BaseException) -> None:
    assert transport_failure(exc) is None


@pytest.fixture
async def cookie_setting_upstream() -> AsyncIterator[str]:
    """A peer that sets a cookie on /login and echoes the Cookie header it got on /whoami."""

    async def login(request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "user-a-secret", path="/")
        return response

    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"cookie": request.headers.get("Cookie")})

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_shared_session_never_sends_one_users_upstream_cookie_with_anothers_request(
    cookie_setting_upstream: str,
) -> None:
    # By name, not by IP: aiohttp's default jar already refuses cookies from an IP address.
    upstream = cookie_setting_upstream.replace("127.0.0.1", "localhost")
    session = make_session(read_timeout=CLIENT_TIMEOUT)
    async with session:
        async with session.get(f"{upstream}/login") as first:  # user A's call
            assert "session=user-a-secret" in first.headers["Set-Cookie"]
        async with session.get(f"{upstream}/whoami") as second:  # user B's call
            assert (await second.json()) == {"cookie": None}


async def test_a_shared_client_never_sends_one_users_upstream_cookie_with_anothers_request(
    cookie_setting_upstream: str,
) -> None:
    async with make_client(timeout=CLIENT_TIMEOUT, base_url=cookie_setting_upstream) as client:
        first = await client.get("/login")
        assert "session=user-a-secret" in first.headers["set-cookie"]
        second = await client.get("/whoami")
        assert second.json() == {"cookie": None}
        assert not client.cookies
