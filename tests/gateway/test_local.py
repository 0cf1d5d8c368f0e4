"""Local mode: the four apps behind the route table, health and readiness of the whole platform."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.common.migrations import upgrade
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import EmbeddedPostgres, embedded_postgres, free_port
from apps.gateway.local_apps import LOCAL_AUDIENCE, LocalEnvironment, build_apps
from apps.gateway.routes import APPS, AppName
from tests.harness.server import serve


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A Postgres this module may stop and start without disturbing other tests."""
    with tempfile.TemporaryDirectory(prefix="jan-pg-own-") as tmp:
        os.chmod(tmp, 0o755)
        with embedded_postgres(Path(tmp) / "data") as server:
            for spec in APPS.values():
                upgrade(spec.package, server.url)
            yield server


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
        health = httpx.get(f"{server.url}/healthz").json()
        assert set(health["apps"]) == {name.value for name in AppName}
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200, ready.text
        own_postgres.stop()
        try:
            down = httpx.get(f"{server.url}/readyz", timeout=10)
            assert down.status_code == 503
            assert down.json()["apps"]["llm-api"]["checks"]["database"]["status"] == "error"
            assert httpx.get(f"{server.url}/healthz").status_code == 200
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
        response = httpx.get(f"{server.url}/v2/anything")
        assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"


def test_jan_server_dev_serves_the_whole_platform() -> None:
    """`make dev` runs this command; it must come up, report all four apps, and stop on Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="jan-dev-") as tmp:
        os.chmod(tmp, 0o755)  # the embedded server runs as an unprivileged user when tests run as root
        _run_dev(Path(tmp) / "data")


def _run_dev(data_dir: Path) -> None:
    port = free_port()
    data_dir.mkdir()
    env = {**os.environ, "JAN_PORT": str(port), "JAN_DATA_DIR": str(data_dir), "JAN_LOCAL_MODEL": "0"}
    env.pop("DATABASE_URL", None)
    env.pop("LLM_UPSTREAM_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.cli", "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "jan-server dev did not start"
                time.sleep(0.3)
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["apps"]) == {"llm-api", "response-api", "media-api", "mcp-tools"}
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        assert (data_dir / "issuer-key.pem").exists()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
