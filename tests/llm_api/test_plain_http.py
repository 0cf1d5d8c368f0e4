"""The plain HTTP/1.1 pool (apps/llm_api/providers/plain_http.py), answers read whole; streamed
answers are in test_plain_stream.py.

Against a raw loopback server that answers byte for byte as a test scripts it, so each way an HTTP
server may frame or end an answer is exercised: keep-alive, chunked, closed-delimited, a connection
closed while idle or before answering, a body cut short, silence, a refused connection. The pool's
ordinary path is also under every non-streamed chat test in this directory (a uvicorn upstream).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from apps.common.errors import APIError
from apps.common.http import make_session, transport_failure
from apps.llm_api.providers.plain_http import plain_target
from apps.llm_api.providers.upstream import Upstream, open_chat
from tests.harness.waiting import eventually_async
from tests.llm_api.raw_upstream import BODY, OK, idle, ok, pool, post, route, server


async def test_connections_are_kept_alive_and_requests_are_well_formed() -> None:
    plain = pool()
    async with server(ok) as upstream:
        for _ in range(3):
            assert await post(plain, upstream.url) == (200, BODY)
        assert upstream.connections == 1
        head, _, body = upstream.requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
        assert f"host: {upstream.url.split('/')[2]}".encode() in lines
        assert b"content-length: 13" in lines and body == b'{"model":"m"}'
    await plain.aclose()


async def test_a_chunked_answer_and_a_split_head_are_assembled() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        return True

    plain = pool()
    async with server(chunked) as upstream:
        assert await post(plain, upstream.url) == (200, b"hello world")
        assert await post(plain, upstream.url) == (200, b"hello world")
        assert upstream.connections == 1
    await plain.aclose()


async def test_an_answer_ended_by_closing_is_read_to_the_end_and_not_reused() -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\nupstream gone")
        return False

    plain = pool()
    async with server(until_eof) as upstream:
        assert await post(plain, upstream.url) == (502, b"upstream gone")
        assert await post(plain, upstream.url) == (502, b"upstream gone")
        assert upstream.connections == 2
    await plain.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(OK)
        return False  # keep-alive was not refused, but the server closes anyway

    plain = pool()
    async with server(once) as upstream:
        assert await post(plain, upstream.url) == (200, BODY)
        [pooled] = idle(plain)
        await eventually_async(lambda: pooled.closed, "the server's close reached the pooled connection")
        assert await post(plain, upstream.url) == (200, BODY)
        assert upstream.connections == 2
    await plain.aclose()


async def test_idle_connections_expire_after_keepalive() -> None:
    plain = pool(keepalive=0.05)
    async with server(ok) as upstream:
        await post(plain, upstream.url)
        [pooled] = idle(plain)
        await eventually_async(
            lambda: time.monotonic() - pooled.idle_since >= plain.keepalive,
            "the connection outlived keepalive",
        )
        await post(plain, upstream.url)
        assert upstream.connections == 2
    await plain.aclose()


async def test_idle_connections_are_closed_without_further_requests() -> None:
    plain = pool(keepalive=0.05)
    async with server(ok) as upstream:
        await asyncio.gather(post(plain, upstream.url), post(plain, upstream.url))
        assert upstream.connections == 2 and len(idle(plain)) == 2
        await eventually_async(lambda: upstream.closed == 2, "the server saw both idle connections closed")
        assert idle(plain) == []
        assert await post(plain, upstream.url) == (200, BODY)
    await plain.aclose()


async def test_a_close_before_the_head_raises_from_post_and_open_chat_retries_it() -> None:
    async def first_dropped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        if number == 0:
            return False  # a pooled connection the server was closing as the request went out
        writer.write(OK)
        return True

    plain = pool()
    async with server(first_dropped) as upstream:
        with pytest.raises(ConnectionResetError) as caught:
            await plain.post(upstream.url, b"{}", {})
        assert transport_failure(caught.value) == "disconnected"
        assert await post(plain, upstream.url) == (200, BODY)

    async with server(first_dropped) as upstream, make_session(read_timeout=5.0) as session:
        chat_route = route(upstream.url.removesuffix("/chat/completions"))
        response = await open_chat(Upstream(session, plain), chat_route, b"{}", stream=False)
        try:
            assert not response.ended()
            assert (response.status, await response.read()) == (200, BODY)
            assert response.ended()
        finally:
            response.close()
        assert upstream.connections == 2 and len(upstream.requests) == 2
    await plain.aclose()


async def test_a_body_cut_short_or_a_silence_raises_from_read() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')
        if number == 0:
            return False
        await asyncio.sleep(1)  # silent past the read timeout
        return False

    plain = pool(read_timeout=0.2)
    async with server(cut) as upstream:
        for expected in (ConnectionResetError, TimeoutError):
            response = await plain.post(upstream.url, b"{}", {})
            assert response.status == 200
            with pytest.raises(expected):
                await response.read()
            response.close()
    await plain.aclose()


async def test_the_silence_limit_counts_from_each_request_on_a_kept_connection() -> None:
    # One silence watch serves the connection's requests: armed by the first, it fires during the
    # second, which has been silent for less than the limit, so it waits on; the third times out.
    async def later(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        await asyncio.sleep((0.0, 0.3, 3.0)[number])
        writer.write(OK)
        return True

    plain = pool(read_timeout=0.6)
    async with server(later) as upstream:
        assert await post(plain, upstream.url) == (200, BODY)
        [connection] = next(iter(plain._idle.values()))
        watch = connection.timer
        await asyncio.sleep(0.45)
        assert await post(plain, upstream.url) == (200, BODY)
        assert connection.timer is not watch  # re-armed for the time left, not cut at 0.6 s
        with pytest.raises(TimeoutError):
            await post(plain, upstream.url)
        assert upstream.connections == 1
    await plain.aclose()


async def test_quick_requests_share_one_silence_watch() -> None:
    plain = pool(read_timeout=5.0)
    async with server(ok) as upstream:
        assert await post(plain, upstream.url) == (200, BODY)
        [connection] = next(iter(plain._idle.values()))
        watch = connection.timer
        for _ in range(3):
            assert await post(plain, upstream.url) == (200, BODY)
        assert watch is not None and connection.timer is watch  # no timer made per request
    await plain.aclose()
    assert connection.timer is None


async def test_a_silent_server_times_out_before_the_head() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        await asyncio.sleep(1)
        return False

    plain = pool(read_timeout=0.1)
    async with server(silent) as upstream:
        with pytest.raises(TimeoutError):
            await plain.post(upstream.url, b"{}", {})
    await plain.aclose()


async def test_a_refused_connection_is_unreachable() -> None:
    listener = await asyncio.start_server(ok, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    plain = pool()
    with pytest.raises(ConnectionRefusedError) as caught:
        await plain.post(f"http://127.0.0.1:{port}/v1/chat/completions", b"{}", {})
    assert transport_failure(caught.value) == "unreachable"
    await plain.aclose()


async def test_a_header_with_a_line_break_is_refused() -> None:
    plain = pool()
    async with server(ok) as upstream:
        with pytest.raises(ValueError, match="line break"):
            await plain.post(upstream.url, b"{}", {"authorization": "Bearer x\r\nx-injected: 1"})
        assert await post(plain, upstream.url) == (200, BODY)  # its slot was given back
    await plain.aclose()


async def test_a_wait_for_a_free_connection_is_bounded_by_the_connect_timeout() -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        await release.wait()
        writer.write(OK)
        return True

    plain = pool(max_connections=1, connect_timeout=0.1)
    async with server(held) as upstream:
        first = asyncio.create_task(post(plain, upstream.url))
        await eventually_async(
            lambda: len(upstream.requests) == 1, "the first request holds the one connection"
        )
        with pytest.raises(TimeoutError):
            await plain.post(upstream.url, b"{}", {})
        release.set()
        assert await first == (200, BODY)
        assert await post(plain, upstream.url) == (200, BODY)  # the slot came back
    await plain.aclose()


def test_only_plain_http_urls_are_served() -> None:
    assert plain_target("https://api.openai.com/v1/chat/completions") is None
    assert plain_target("http://user:pw@host/v1/chat/completions") is None
    target = plain_target("http://vllm:8000/v1/chat/completions?x=1")
    assert target is not None and (target.host, target.port) == ("vllm", 8000)
    assert target.head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: vllm:8000\r\n")
    default = plain_target("http://[::1]/chat/completions")
    assert default is not None and b"host: [::1]\r\n" in default.head


@pytest.mark.parametrize(
    "head",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["garbage", "length-and-chunked"],
)
async def test_an_unparsable_head_is_a_502_without_a_second_request(head: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(head)
        return True

    plain = pool()
    async with server(bad) as upstream, make_session(read_timeout=5.0) as session:
        chat_route = route(upstream.url.removesuffix("/chat/completions"))
        with pytest.raises(APIError) as caught:
            await open_chat(Upstream(session, plain), chat_route, b"{}", stream=False)
        assert len(upstream.requests) == 1  # the model was not asked twice
        assert caught.value.status_code == 502 and caught.value.code == "upstream_unavailable"
        assert "ClientResponseError" in caught.value.message  # as through aiohttp
    await plain.aclose()


def test_the_request_line_is_encoded_as_aiohttp_encodes_it() -> None:
    target = plain_target("http://vllm:8000/v1 x/\u00e9/chat/completions?q=\u00fc")
    assert target is not None
    assert target.head.startswith(
        b"POST /v1%20x/%C3%A9/chat/completions?q=%C3%BC HTTP/1.1\r\nhost: vllm:8000\r\n"
    )
    idn = plain_target("http://b\u00fccher.example/v1/chat/completions")
    assert (
        idn is not None
        and idn.host == "xn--bcher-kva.example"
        and b"host: xn--bcher-kva.example\r\n" in idn.head
    )


async def test_a_url_the_pool_cannot_read_is_aiohttps_502() -> None:
    assert plain_target("http://h:99999/v1/chat/completions") is None
    async with make_session(read_timeout=5.0) as session:
        plain = pool()
        with pytest.raises(APIError) as caught:
            await open_chat(Upstream(session, plain), route("http://127.0.0.1:99999/v1"), b"{}", stream=False)
        assert caught.value.status_code == 502 and caught.value.code == "upstream_unavailable"
        await plain.aclose()
