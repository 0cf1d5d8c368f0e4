"""`jan-server charts pull`: pinned charts from a chart repository's index.yaml, verified, cached.

The repository is a real HTTP server on loopback serving an `index.yaml` and archives built here.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from apps.cli import main as cli
from infra import chart_cache, versions
from infra.chart_cache import ChartCacheError, ChartNotCached
from infra.versions import ChartPin


def chart_archive(name: str, version: str) -> bytes:
    """A minimal chart archive whose Chart.yaml says `name` and `version`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        files = {
            f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\n",
            f"{name}/values.yaml": "replicas: 1\n",
            f"{name}/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        }
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class Repository:
    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def publish(self, entries: list[dict[str, object]]) -> None:
        by_name: dict[str, list[dict[str, object]]] = {}
        for entry in entries:
            by_name.setdefault(str(entry["name"]), []).append(entry)
        self.files["/charts/index.yaml"] = yaml.safe_dump({"apiVersion": "v1", "entries": by_name}).encode()

    def pin(self, chart: str, version: str) -> ChartPin:
        return ChartPin(self.url, chart, version)


@pytest.fixture
def repository() -> Iterator[Repository]:
    repo = Repository(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            repo.requests.append(self.path)
            body = repo.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    repo.url = f"http://127.0.0.1:{server.server_address[1]}/charts"
    try:
        yield repo
    finally:
        server.shutdown()
        server.server_close()


def test_pull_downloads_each_pinned_version_once(repository: Repository, tmp_path: Path) -> None:
    kong, jaeger = chart_archive("kong", "3.4.1"), chart_archive("jaeger", "4.11.1")
    repository.files["/charts/kong-3.4.1.tgz"] = kong
    repository.files["/elsewhere/jaeger-4.11.1.tgz"] = jaeger
    repository.publish(
        [
            {"name": "kong", "version": "3.4.0", "urls": ["kong-3.4.0.tgz"]},
            {
                "name": "kong",
                "version": "3.4.1",
                "urls": ["kong-3.4.1.tgz"],  # relative to the repository
                "digest": hashlib.sha256(kong).hexdigest(),
            },
            {
                "name": "jaeger",
                "version": "4.11.1",
                "urls": [f"{repository.url[:-7]}/elsewhere/jaeger-4.11.1.tgz"],
            },
        ]
    )
    pins = [repository.pin("kong", "3.4.1"), repository.pin("jaeger", "4.11.1")]

    pulled = chart_cache.pull(pins, tmp_path)

    assert [(item.path.name, item.downloaded) for item in pulled] == [
        ("kong-3.4.1.tgz", True),
        ("jaeger-4.11.1.tgz", True),
    ]
    assert (tmp_path / "kong-3.4.1.tgz").read_bytes() == kong
    assert repository.requests.count("/charts/index.yaml") == 1  # one index per repository
    repository.requests.clear()
    assert [item.downloaded for item in chart_cache.pull(pins, tmp_path)] == [False, False]
    assert repository.requests == []
    assert chart_cache.require(pins[0], tmp_path) == tmp_path / "kong-3.4.1.tgz"


def test_an_archive_that_is_not_the_pinned_chart_is_refused(repository: Repository, tmp_path: Path) -> None:
    repository.files["/charts/kong-3.4.1.tgz"] = chart_archive("kong", "3.4.0")
    repository.files["/charts/grafana-12.11.1.tgz"] = chart_archive("loki", "12.11.1")
    repository.publish(
        [
            {"name": "kong", "version": "3.4.1", "urls": ["kong-3.4.1.tgz"]},
            {"name": "grafana", "version": "12.11.1", "urls": ["grafana-12.11.1.tgz"]},
        ]
    )
    with pytest.raises(ChartCacheError, match=r"holds kong 3\.4\.0 instead"):
        chart_cache.pull([repository.pin("kong", "3.4.1")], tmp_path)
    with pytest.raises(ChartCacheError, match=r"holds loki 12\.11\.1 instead"):
        chart_cache.pull([repository.pin("grafana", "12.11.1")], tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-trusted is left behind


def test_digest_mismatch_missing_version_and_broken_archive_are_refused(
    repository: Repository, tmp_path: Path
) -> None:
    repository.files["/charts/kong-3.4.1.tgz"] = chart_archive("kong", "3.4.1")
    repository.files["/charts/keda-2.18.1.tgz"] = b"not a tarball"
    repository.publish(
        [
            {"name": "kong", "version": "3.4.1", "urls": ["kong-3.4.1.tgz"], "digest": "00" * 32},
            {"name": "keda", "version": "2.18.1", "urls": ["keda-2.18.1.tgz"]},
        ]
    )
    with pytest.raises(ChartCacheError, match=r"does not match the index's digest"):
        chart_cache.pull([repository.pin("kong", "3.4.1")], tmp_path)
    with pytest.raises(ChartCacheError, match=r"the index has no kong 9\.9\.9"):
        chart_cache.pull([repository.pin("kong", "9.9.9")], tmp_path)
    with pytest.raises(ChartCacheError, match="not a readable chart archive"):
        chart_cache.pull([repository.pin("keda", "2.18.1")], tmp_path)
    with pytest.raises(ChartCacheError, match="404"):
        chart_cache.pull([ChartPin(f"{repository.url}/nowhere", "kong", "3.4.1")], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_corrupted_cached_archive_is_not_trusted(repository: Repository, tmp_path: Path) -> None:
    (tmp_path / "kong-3.4.1.tgz").write_bytes(chart_archive("kong", "3.4.2"))
    with pytest.raises(ChartCacheError, match=r"holds kong 3\.4\.2 instead"):
        chart_cache.pull([repository.pin("kong", "3.4.1")], tmp_path)


def test_the_cache_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(chart_cache.ENV, str(tmp_path))
    assert chart_cache.cache_dir() == tmp_path
    pin = ChartPin("https://charts.example", "kong", "3.4.1")
    with pytest.raises(
        ChartNotCached, match=r"kong 3.4.1 is not in the chart cache .*jan-server charts pull"
    ):
        chart_cache.require(pin)
    assert chart_cache.missing([pin]) == [pin]
    monkeypatch.delenv(chart_cache.ENV)
    assert chart_cache.cache_dir() == Path.home() / ".cache" / "jan-server" / "charts"


def test_charts_pull_command(
    repository: Repository,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository.files["/charts/kong-3.4.1.tgz"] = chart_archive("kong", "3.4.1")
    repository.files["/charts/keda-2.18.1.tgz"] = chart_archive("keda", "2.18.0")
    repository.publish(
        [
            {"name": "kong", "version": "3.4.1", "urls": ["kong-3.4.1.tgz"]},
            {"name": "keda", "version": "2.18.1", "urls": ["keda-2.18.1.tgz"]},
        ]
    )
    monkeypatch.setenv(chart_cache.ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(versions, "UPSTREAM_CHARTS", (repository.pin("kong", "3.4.1"),))
    assert cli(["charts", "pull"]) == 0
    assert f"kong 3.4.1: downloaded {tmp_path / 'cache' / 'kong-3.4.1.tgz'}" in capsys.readouterr().out

    monkeypatch.setattr(versions, "UPSTREAM_CHARTS", (repository.pin("keda", "2.18.1"),))
    assert cli(["charts", "pull", "--cache", str(tmp_path / "other")]) == 1
    assert "holds keda 2.18.0 instead" in capsys.readouterr().err
