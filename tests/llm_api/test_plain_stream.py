"""Streamed answers through the plain HTTP/1.1 pool (apps/llm_api/providers/plain_wire.py), against a
raw loopback server: pieces handed over as they arrive, backpressure, and the ways a stream breaks.
The relay above it is under every streamed chat test in this directory (a uvicorn upstream)."""

from __future__ import annotations

import asyncio

import pytest

from apps.common.http import make_session
from apps.llm_api.providers.plain_wire import STREAM_BUFFER_LIMIT
from apps.llm_api.providers.upstream import StreamBroken, Upstream, open_chat
from tests.harness.waiting import eventually_async
from tests.llm_api.raw_upstream import BODY, STREAM_HEAD, chunk, idle, ok, pool, post, route, server


async def test_pieces_are_handed_over_as_they_arrive_and_the_connection_is_kept() -> None:
    go_on = asyncio.Event()

    async def stepwise(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        if number == 1:  # the next request on the same connection: read whole
            return await ok(reader, writer, number)
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await go_on.wait()  # the second piece is sent only once the first was handed over
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return True

    plain = pool()
    async with server(stepwise) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        pieces = response.chunks()
        assert await anext(pieces) == b"data: 1\n\n"
        assert not response.ended
        go_on.set()
        assert await anext(pieces) == b"data: [DONE]\n\n"
        assert response.ended  # known with the last piece: the end of the body came with it
        assert [piece async for piece in pieces] == []
        response.close()
        assert await post(plain, upstream.url) == (200, BODY)
        assert upstream.connections == 1
    await plain.aclose()


async def test_pieces_that_arrived_while_the_reader_was_busy_come_as_one() -> None:
    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(STREAM_HEAD)
        for n in range(5):
            writer.write(chunk(b"data: %d\n\n" % n))
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        return True

    plain = pool()
    async with server(burst) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        connection = response._connection
        assert connection is not None
        await eventually_async(lambda: connection.complete, "the whole body arrived, unread")
        pieces = [piece async for piece in response.chunks()]
        assert pieces == [b"".join(b"data: %d\n\n" % n for n in range(5))]
        response.close()
    await plain.aclose()


async def test_a_reader_that_falls_behind_pauses_the_socket_without_a_timeout() -> None:
    piece = b"x" * 65536
    count = 128  # 8 MiB: more than the kernel's socket buffers take while nobody reads
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        nonlocal sent
        writer.write(STREAM_HEAD)
        for _ in range(count):
            writer.write(chunk(piece))
            await writer.drain()  # blocks once the client stops reading
            sent += 1
        writer.write(b"0\r\n\r\n")
        return True

    plain = pool(read_timeout=0.2)
    async with server(flood) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        connection = response._connection
        assert connection is not None
        await eventually_async(lambda: connection.paused, "the socket was paused")
        # Past the limit by at most one read of the socket (uvloop reads up to 256 KiB at a time).
        assert STREAM_BUFFER_LIMIT < connection.buffered <= STREAM_BUFFER_LIMIT + 256 * 1024
        await asyncio.sleep(0.5)  # longer than the silence limit: ours, not the model's
        assert connection.error is None and sent < count // 2  # the server is blocked on its send
        received = b"".join([piece async for piece in response.chunks()])
        assert received == piece * count and sent == count
        response.close()
        assert idle(plain) == [connection] and not connection.paused
    await plain.aclose()


@pytest.mark.parametrize(
    ("ending", "code"),
    [("cut", "upstream_disconnected"), ("silent", "upstream_timeout"), ("garbled", "upstream_disconnected")],
)
async def test_a_stream_that_breaks_midway_is_a_broken_stream(ending: str, code: str) -> None:
    async def breaking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        if ending == "silent":
            await asyncio.sleep(1)
        elif ending == "garbled":
            writer.write(b"zz\r\nnot a chunk\r\n")
            await writer.drain()
            await asyncio.sleep(1)
        return False

    plain = pool(read_timeout=0.2)
    async with server(breaking) as upstream, make_session(read_timeout=5.0) as session:
        chat_route = route(upstream.url.removesuffix("/chat/completions"))
        response = await open_chat(Upstream(session, plain), chat_route, b"{}", stream=True)
        received = []
        with pytest.raises(StreamBroken) as caught:
            async for piece in response.chunks():
                received.append(piece)
        response.close()
        assert received == [b"data: 1\n\n"] and caught.value.code == code
        assert not response.ended() and idle(plain) == []
    await plain.aclose()


async def test_a_stream_left_before_its_end_drops_the_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(STREAM_HEAD + chunk(b"data: 1\n\n"))
        await asyncio.sleep(1)
        return False

    plain = pool()
    async with server(endless) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        assert await anext(response.chunks()) == b"data: 1\n\n"
        response.close()
        assert idle(plain) == []
        await eventually_async(lambda: upstream.closed == 1, "the server saw the connection closed")
    await plain.aclose()


@pytest.mark.parametrize(
    ("error", "piece"),
    [
        (b'{"error":{"message":"too many requests, slow down"}}', 10),
        # Past the stream buffer's limit: read whole, it is not held back (nor waited on for ever).
        (b'{"error":{"message":"%s"}}' % (b"x" * (4 * STREAM_BUFFER_LIMIT)), 65536),
    ],
    ids=["small", "past-the-buffer-limit"],
)
async def test_an_error_answer_to_a_stream_request_is_read_whole(error: bytes, piece: int) -> None:
    """A model refusing a stream answers with a JSON error, not a stream: read whole, however it
    arrives, so the client gets the model's whole message."""

    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: %d\r\n\r\n" % len(error))
        for start in range(0, len(error), piece):  # pieces that come after the read began
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(error[start : start + piece])
        return True

    plain = pool()
    async with server(refusing) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        async with asyncio.timeout(10):
            assert (response.status, await response.read()) == (429, error)
        response.close()
        assert len(idle(plain)) == 1  # read to its end: the connection is kept
    await plain.aclose()


async def test_a_stream_ended_by_closing_the_connection_is_complete() -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"data: [DONE]\n\n")
        return False

    plain = pool()
    async with server(until_eof) as upstream:
        response = await plain.post(upstream.url, b"{}", {}, stream=True)
        assert b"".join([piece async for piece in response.chunks()]) == b"data: 1\n\ndata: [DONE]\n\n"
        assert response.ended
        response.close()
        assert idle(plain) == []  # closed by the server: not reused
    await plain.aclose()
