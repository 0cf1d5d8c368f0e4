"""A TCP proxy on loopback in front of a real server, which cuts chosen HTTP requests.

It forwards bytes both ways and looks only at the start of each request a client sends (its
request line), so the server and the client are the real ones and the faults are real socket
faults: a *refused* request has its connection closed before the server sees it (the server is
away, as far as the client can tell); a *dropped* one is served, and its answer is thrown away
with the connection (the write landed, the client never heard).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from apps.gateway.embedded import free_port


@dataclass
class _Rule:
    method: bytes
    path_prefix: bytes
    path_suffix: bytes

    def matches(self, chunk: bytes) -> bool:
        line = chunk.split(b"\r\n", 1)[0]
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        return method == self.method and path.startswith(self.path_prefix) and path.endswith(self.path_suffix)


class FaultProxy:
    def __init__(self, target_port: int, method: str, path_prefix: str, path_suffix: str = "") -> None:
        self.port = free_port()
        self._target = target_port
        self._rule = _Rule(method.encode(), path_prefix.encode(), path_suffix.encode())
        self.refusing = False
        self.answers_to_drop = 0
        self.refused = 0  # requests cut before the server saw them
        self.dropped = 0  # requests served whose answer was cut
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:  # closes the server on the way out
            await self._stopping.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        drop_answer = False

        async def forward_requests() -> None:
            nonlocal drop_answer
            while chunk := await reader.read(65536):
                if self._rule.matches(chunk):
                    with self._lock:
                        if self.refusing:
                            self.refused += 1
                            return
                        if self.answers_to_drop:
                            self.answers_to_drop -= 1
                            drop_answer = True
                upstream_writer.write(chunk)
                await upstream_writer.drain()

        async def forward_answers() -> None:
            while chunk := await upstream_reader.read(65536):
                if drop_answer:
                    with self._lock:
                        self.dropped += 1
                    return
                writer.write(chunk)
                await writer.drain()

        tasks = [asyncio.ensure_future(forward_requests()), asyncio.ensure_future(forward_answers())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # a reset connection ends its direction
        for stream in (writer, upstream_writer):
            stream.close()
            with suppress(ConnectionError):
                await stream.wait_closed()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)


@contextmanager
def fault_proxy(
    target_url: str, method: str, path_prefix: str, path_suffix: str = ""
) -> Iterator[FaultProxy]:
    """A proxy to `target_url` (`http://127.0.0.1:<port>`) that can fault the requests whose method
    is `method` and whose path starts with `path_prefix` and ends with `path_suffix`."""
    proxy = FaultProxy(int(target_url.rsplit(":", 1)[1]), method, path_prefix, path_suffix)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
