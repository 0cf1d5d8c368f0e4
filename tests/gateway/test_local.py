"""Local mode: the four apps behind the route table, health and readiness of the whole platform."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import EmbeddedPostgres, free_port
from apps.gateway.local_apps import LOCAL_AUDIENCE, LocalEnvironment, build_apps
from apps.gateway.routes import AppName
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT


def test_readiness_follows_the_database(
    own_postgres: EmbeddedPostgres, s3_endpoint: str, tmp_path: Path
) -> None:
    port = free_port()
    env = LocalEnvironment(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=tmp_path,
        database_url=own_postgres.url,
        s3_endpoint_url=s3_endpoint,
        model_url=None,
        model_api_key=None,
        internal_token="t",
    )
    with serve(LocalGateway(build_apps(env)), port=port) as server:
        health = httpx.get(f"{server.url}/healthz", timeout=CLIENT_TIMEOUT).json()
        assert set(health["apps"]) == {name.value for name in AppName}
        ready = httpx.get(f"{server.url}/readyz", timeout=CLIENT_TIMEOUT)
        assert ready.status_code == 200, ready.text
        own_postgres.stop()
        try:
            down = httpx.get(f"{server.url}/readyz", timeout=10)
            assert down.status_code == 503
            assert down.json()["apps"]["llm-api"]["checks"]["database"]["status"] == "error"
            assert httpx.get(f"{server.url}/healthz", timeout=CLIENT_TIMEOUT).status_code == 200
            token = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE).mint(
                "u"
            )
            outage = httpx.get(
                f"{server.url}/v1/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            assert outage.status_code == 503, outage.text
            assert outage.json()["error"]["type"] == "service_unavailable"
        finally:
            own_postgres.start()
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "readiness did not recover"
            time.sleep(0.2)


def test_unrouted_paths_are_404_envelopes(
    own_postgres: EmbeddedPostgres, s3_endpoint: str, tmp_path: Path
) -> None:
    env = LocalEnvironment(
        base_url="http://127.0.0.1:1",
        data_dir=tmp_path,
        database_url=own_postgres.url,
        s3_endpoint_url=s3_endpoint,
        model_url=None,
        model_api_key=None,
        internal_token="t",
    )
    with serve(LocalGateway(build_apps(env))) as server:
        response = httpx.get(f"{server.url}/v2/anything", timeout=CLIENT_TIMEOUT)
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_jan_server_dev_serves_the_whole_platform() -> None:
    """`make dev` runs this command; it must come up, report all four apps, and stop on Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="jan-dev-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server runs as an unprivileged user when tests run as root
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        process, url = _start_dev(data_dir)
        try:
            ready = httpx.get(f"{url}/readyz", timeout=5)
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["apps"]) == {"llm-api", "response-api", "media-api", "mcp-tools"}
            assert httpx.get(f"{url}/healthz", timeout=CLIENT_TIMEOUT).json()["status"] == "ok"
            assert (data_dir / "issuer-key.pem").exists()
        finally:
            _interrupt(process)
        assert process.returncode == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
        assert _postgres_processes(data_dir) == []


def test_jan_server_dev_stops_everything_after_an_earlier_run_was_killed() -> None:
    """A run killed with SIGKILL leaves its Postgres running; the next run adopts it and stops it."""
    with tempfile.TemporaryDirectory(prefix="jan-dev-") as tmp:
        os.chmod(tmp, 0o755)
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        first, _ = _start_dev(data_dir)
        first.kill()
        _reap(first)
        assert _postgres_processes(data_dir), "the killed run's Postgres is expected to survive it"
        second, url = _start_dev(data_dir)
        try:
            assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        finally:
            _interrupt(second)
        assert second.returncode == 0
        assert _postgres_processes(data_dir) == []


def _start_dev(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`jan-server dev` on a free port and `data_dir`, once it answers; (process, base URL)."""
    port = free_port()
    env = {**os.environ, "JAN_PORT": str(port), "JAN_DATA_DIR": str(data_dir), "JAN_LOCAL_MODEL": "0"}
    env.pop("DATABASE_URL", None)
    env.pop("LLM_UPSTREAM_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode() if process.stdout else "dev exited")
        try:
            httpx.get(f"{url}/healthz", timeout=5)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("jan-server dev did not start") from None
            time.sleep(0.3)


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a terminal sends it."""
    process.send_signal(signal.SIGINT)
    try:
        _reap(process)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for the process and close our end of its output pipe."""
    process.wait(timeout=30)
    if process.stdout is not None:
        process.stdout.close()


def _postgres_processes(data_dir: Path) -> list[int]:
    """Postgres server processes still running on `data_dir`."""
    target = str((data_dir / "postgres").resolve())
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (NotADirectoryError, FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if argv[0].endswith("/postgres") and target in argv:
            found.append(int(entry.name))
    return found


def test_a_child_of_a_killed_dev_run_does_not_outlive_it() -> None:
    """The local model server is started with `_die_with_parent`: SIGKILL on its parent stops it too."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from apps.gateway.embedded import _die_with_parent\n"
            "child = subprocess.Popen(['sleep', '600'], preexec_fn=_die_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()
    _reap(parent)
    deadline = time.monotonic() + 30
    try:
        while _running(child):
            assert time.monotonic() < deadline, "the child outlived its killed parent"
            time.sleep(0.05)
    finally:
        if _running(child):  # leave nothing behind when the assertion fails
            os.kill(child, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
