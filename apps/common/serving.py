"""uvicorn's HTTP/1.1 protocol (httptools), with a response's head and first body bytes in one write.

uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`,
then the body on `http.response.body`: two socket writes per plain response. On loopback (and
behind a local proxy) each write also runs the receiver's side of TCP and wakes it, once for a head
it cannot use alone; the two writes were ~14% of llm-api's CPU on a plain chat completion
(bench/chat_cpu.py). Here the head is held and sent with the next write of the same connection, or
on the event loop's next turn if none comes first, so a streamed response's head goes out as it did
(one loop turn later at most: the app is already waiting for its upstream by then). Bytes always go
out in the order they were written; closing sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD = b"HTTP/"


class _HeadHoldingTransport:
    """The connection's transport, except that a response head waits for the bytes after it."""

    __slots__ = ("_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held + data)
        elif isinstance(data, bytes) and data.startswith(_HEAD) and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=CoalescingHttpToolsProtocol)`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _HeadHoldingTransport(transport, self.loop)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # The websocket protocol gets the real transport (and whatever was held is sent first).
        wrapper = self.transport
        if isinstance(wrapper, _HeadHoldingTransport):
            wrapper.flush()
            self.transport = wrapper.transport
        super().handle_websocket_upgrade()


def serve(target: Any, *, host: str, port: int, workers: int | None = None, factory: bool = False) -> None:
    """Run uvicorn as every entry point does (`jan-server serve`, `--workers`, `jan-server dev`):
    with this protocol, the logging the apps configure themselves (`log_config=None`), no uvicorn
    access log (ServiceApp writes one line per request itself), and no `X-Forwarded-*` rewriting of
    the client address and scheme: no app reads either, and uvicorn trusts only 127.0.0.1 by default
    (never Kong in a cluster), so it only ever ran on loopback, at ~5 µs a request.

    `target` is an ASGI app, or an import string when uvicorn starts `workers` processes.
    """
    import uvicorn  # noqa: PLC0415 - not imported by the apps' tests that never serve

    uvicorn.run(
        target,
        host=host,
        port=port,
        workers=workers,
        factory=factory,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        http=CoalescingHttpToolsProtocol,
    )
