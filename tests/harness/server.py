"""Run an ASGI app on a real loopback port in a background thread, as a user's client would see it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import uvicorn

from apps.common.health import ReadinessCheck
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import free_port
from apps.gateway.local_apps import LocalEnvironment, build_apps
from apps.gateway.routes import AppName
from apps.llm_api.providers.catalog import ModelCatalog


class ServerThread:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        # asyncio.run, not a bare loop: tasks a response leaves behind (sse-starlette's shutdown
        # watcher) are cancelled before the loop closes instead of being destroyed pending at exit.
        asyncio.run(self.server.serve())

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve(app: Any, *, port: int | None = None) -> Iterator[ServerThread]:
    server = ServerThread(app, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _Fake(Protocol):
    app: Any
    url: str


FakeT = TypeVar("FakeT", bound=_Fake)


@contextmanager
def serve_fake(fake: FakeT) -> Iterator[FakeT]:
    """Serve a loopback fake (anything with an ASGI `app`) and set its `url`."""
    with serve(fake.app) as server:
        fake.url = server.url
        yield fake


@contextmanager
def serve_local(
    database_url: str,
    s3_endpoint: str,
    data_dir: Path,
    *,
    model_url: str | None = None,
    internal_token: str = "t",
    model_kind: str = "openai_compatible",
    model_check: ReadinessCheck | None = None,
    model_catalog: Mapping[str, ModelCatalog] | None = None,
    stopped: frozenset[AppName] = frozenset(),
    login_redirects: tuple[str, ...] = (),
) -> Iterator[tuple[str, LocalEnvironment]]:
    """The four apps behind the local gateway, wired as `make dev` wires them; yields (url, environment).

    Apps named in `stopped` are left out, as if their pods were down: their routes answer 404.
    """
    port = free_port()
    env = LocalEnvironment(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        model_url=model_url,
        model_api_key=None,
        internal_token=internal_token,
        model_kind=model_kind,
        model_check=model_check,
        model_catalog=model_catalog or {},
        login_redirects=login_redirects,
    )
    apps = {name: app for name, app in build_apps(env).items() if name not in stopped}
    with serve(LocalGateway(apps), port=port) as server:
        yield server.url, env
