"""apps.common.serving: a plain response is one write; streams, keep-alive, 100-continue as before."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from apps.common.serving import CoalescingHttpToolsProtocol, _HeadHoldingTransport, serve
from apps.gateway.embedded import free_port
from tests.harness.waiting import CLIENT_TIMEOUT


class _Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_head_goes_out_with_the_body_or_on_the_next_turn() -> None:
    recorder = _Recorder()
    transport = _HeadHoldingTransport(recorder, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]

    recorder.writes.clear()  # a streamed head is not kept waiting for the first chunk
    transport.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    assert recorder.writes == []
    await asyncio.sleep(0)
    assert recorder.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    transport.write(b"2\r\n{}\r\n")
    assert recorder.writes[-1] == b"2\r\n{}\r\n"

    recorder.writes.clear()  # closing sends what is held first
    transport.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
    transport.close()
    assert recorder.writes == [b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"]
    assert recorder.closed


BIG = bytes(range(256)) * 16384  # 4 MiB: more than the transport's write buffer holds


def _app(release: threading.Event) -> Starlette:
    async def plain(request: Request) -> Response:
        return JSONResponse({"echo": (await request.body()).decode()})

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            # The client asks for the rest only once it has the head: a head held for the body
            # would never arrive.
            await asyncio.get_running_loop().run_in_executor(None, release.wait, CLIENT_TIMEOUT)
            yield b"data: one\n\n"
            yield b"data: two\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def big(request: Request) -> Response:
        return Response(BIG, media_type="application/octet-stream")

    async def fail(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            raise RuntimeError("the app fails after its head")
            yield b""  # pragma: no cover - makes this a generator

        return StreamingResponse(body(), media_type="text/plain")

    routes = [
        Route("/plain", plain, methods=["POST", "HEAD", "GET"]),
        Route("/stream", stream),
        Route("/big", big),
        Route("/fail", fail),
    ]
    return Starlette(routes=routes)


@contextmanager
def _served(app: Any) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, http=CoalescingHttpToolsProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def release() -> threading.Event:
    return threading.Event()


@pytest.fixture
def base(release: threading.Event) -> Iterator[str]:
    with _served(_app(release)) as url:
        yield url


def test_plain_responses_on_one_kept_alive_connection(base: str) -> None:
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as client:
        for number in range(5):
            response = client.post("/plain", content=f"body {number}")
            assert response.status_code == 200 and response.json() == {"echo": f"body {number}"}
        head = client.head("/plain")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/plain").json() == {"echo": ""}


def test_a_streamed_head_arrives_before_its_body(base: str, release: threading.Event) -> None:
    client = httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT)
    with client, client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        release.set()
        assert response.read() == b"data: one\n\ndata: two\n\n"


def test_expect_continue_and_connection_close(base: str) -> None:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(
            b"POST /plain HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n"
            b"connection: close\r\n\r\n"
        )
        received = b""
        while b"100 Continue" not in received:
            received += sock.recv(65536)
        sock.sendall(b"hi")
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert received.endswith(b'{"echo":"hi"}')


def test_serve_runs_uvicorn_with_this_protocol_and_the_apps_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # `jan-server serve` (one process or --workers) and `jan-server dev` all start through serve().
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **options: calls.append((target, options)))
    app = Starlette()
    serve(app, host="127.0.0.1", port=8123)
    serve("apps.cli:worker_app", host="0.0.0.0", port=8124, workers=3, factory=True)
    assert calls == [
        (
            app,
            {
                "host": "127.0.0.1",
                "port": 8123,
                "workers": None,
                "factory": False,
                "log_config": None,
                "access_log": False,
                "proxy_headers": False,
                "http": CoalescingHttpToolsProtocol,
            },
        ),
        (
            "apps.cli:worker_app",
            {
                "host": "0.0.0.0",
                "port": 8124,
                "workers": 3,
                "factory": True,
                "log_config": None,
                "access_log": False,
                "proxy_headers": False,
                "http": CoalescingHttpToolsProtocol,
            },
        ),
    ]


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT)


def test_pipelined_requests_are_answered_in_order(base: str) -> None:
    with _connect(base) as sock:
        sock.sendall(
            b"POST /plain HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\none"
            b"POST /plain HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\ntwo"
            b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3
    first, second, third = (received.index(body) for body in (b'"one"', b'"two"', b'{"echo":""}'))
    assert first < second < third


def test_a_big_body_to_a_slow_reader_arrives_whole_and_the_connection_is_reused(base: str) -> None:
    # Writing pauses (the transport's buffer is over its high-water mark) and resumes as the client reads.
    with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as client:
        for _ in range(2):
            with client.stream("GET", "/big") as response:
                received = b""
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) < 256 * 1024:
                        time.sleep(0.001)
            assert received == BIG
        assert client.get("/plain").json() == {"echo": ""}


def test_an_app_failing_after_its_head_sends_the_head_then_closes(base: str) -> None:
    with _connect(base) as sock:
        sock.sendall(b"GET /fail HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\n")  # the head alone: the body was never started
