"""One classification of wire failures for the three HTTP stacks (`apps.common.http.transport_failure`)."""

from __future__ import annotations

import aiohttp
import httpx
import httpx2
import pytest

from apps.common.http import transport_failure
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
