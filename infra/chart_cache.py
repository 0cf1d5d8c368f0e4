"""The local cache of upstream chart archives, one `<chart>-<version>.tgz` per pin in `infra.versions`.

`jan-server charts pull` fills it from each chart repository's `index.yaml`; `jan-server render` and the
tests read it, so the render can expand the upstream releases with no network. Decisions:
- Plain HTTPS with httpx (no helm binary): one `index.yaml` per repository, the entry whose name and
  version are the pin's, its first URL (relative URLs resolve against the repository). When the index
  carries a `digest`, the archive must match it.
- An archive is trusted only after its own `Chart.yaml` says the pinned name and version: a repository
  serving the wrong archive under the right URL is refused, and nothing is written.
- Files are written atomically (a temporary file renamed into place), so an interrupted pull never
  leaves a truncated archive that a later render would load.
- `JAN_CHART_CACHE` points the cache elsewhere (CI points it at the shared archives, named the same
  way); the default is `~/.cache/jan-server/charts`.
- `oci://` repositories are not supported: none of the pins uses one.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import yaml

from infra.versions import ChartPin

ENV = "JAN_CHART_CACHE"
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class ChartCacheError(Exception):
    """A chart could not be found, fetched or trusted; the message says which and why."""


class ChartNotCached(ChartCacheError):
    pass


@dataclass(frozen=True, slots=True)
class Pulled:
    pin: ChartPin
    path: Path
    downloaded: bool
    """False when the cache already held a verified archive."""


def cache_dir() -> Path:
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "jan-server" / "charts"


def archive_path(pin: ChartPin, directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / f"{pin.chart}-{pin.version}.tgz"


def require(pin: ChartPin, directory: Path | None = None) -> Path:
    """The cached archive of `pin`, or `ChartNotCached` saying how to get it."""
    path = archive_path(pin, directory)
    if not path.is_file():
        raise ChartNotCached(
            f"chart {pin.chart} {pin.version} is not in the chart cache {path.parent} "
            f"(run `jan-server charts pull`, or set {ENV} to a directory that has it)"
        )
    return path


def missing(pins: Iterable[ChartPin], directory: Path | None = None) -> list[ChartPin]:
    return [pin for pin in pins if not archive_path(pin, directory).is_file()]


def pull(
    pins: Iterable[ChartPin], directory: Path | None = None, client: httpx.Client | None = None
) -> list[Pulled]:
    """Download every pin the cache lacks; verify each archive before it is written."""
    target = directory or cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    http = client or httpx.Client(timeout=_TIMEOUT, follow_redirects=True)
    indexes: dict[str, dict[str, object]] = {}
    try:
        results = []
        for pin in pins:
            path = archive_path(pin, target)
            if path.is_file():
                verify(path.read_bytes(), pin)
                results.append(Pulled(pin, path, downloaded=False))
                continue
            if pin.repository not in indexes:
                indexes[pin.repository] = _index(http, pin.repository)
            url, digest = _locate(indexes[pin.repository], pin)
            data = _get(http, url).content
            if digest and hashlib.sha256(data).hexdigest() != digest.lower():
                raise ChartCacheError(f"{url}: the archive does not match the index's digest {digest}")
            verify(data, pin)
            _write_atomically(path, data)
            results.append(Pulled(pin, path, downloaded=True))
        return results
    finally:
        if own_client:
            http.close()


def verify(data: bytes, pin: ChartPin) -> None:
    """Refuse an archive whose own Chart.yaml is not the pinned chart at the pinned version."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and _is_top_chart_yaml(m.name)]
            if len(members) != 1:
                raise ChartCacheError(f"{pin.chart} {pin.version}: the archive has no single top Chart.yaml")
            handle = archive.extractfile(members[0])
            document = yaml.safe_load(handle.read() if handle else b"") or {}
    except (tarfile.TarError, OSError, yaml.YAMLError) as exc:
        raise ChartCacheError(f"{pin.chart} {pin.version}: not a readable chart archive ({exc})") from exc
    name, version = str(document.get("name")), str(document.get("version"))
    if (name, version) != (pin.chart, pin.version):
        raise ChartCacheError(
            f"refused: the archive for {pin.chart} {pin.version} holds {name} {version} instead"
        )


def _is_top_chart_yaml(member: str) -> bool:
    parts = member.strip("/").split("/")
    return len(parts) == 2 and parts[1] == "Chart.yaml"


def _index(http: httpx.Client, repository: str) -> dict[str, object]:
    url = f"{repository.rstrip('/')}/index.yaml"
    if repository.startswith("oci://"):
        raise ChartCacheError(f"{repository}: OCI repositories are not supported by the chart cache")
    try:
        document = yaml.safe_load(_get(http, url).text)
    except yaml.YAMLError as exc:
        raise ChartCacheError(f"{url}: not a chart repository index ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("entries"), dict):
        raise ChartCacheError(f"{url}: not a chart repository index (no entries)")
    return document


def _locate(index: dict[str, object], pin: ChartPin) -> tuple[str, str | None]:
    entries = index["entries"]
    assert isinstance(entries, dict)  # checked by _index
    for entry in entries.get(pin.chart) or []:
        if str(entry.get("version")) == pin.version and entry.get("urls"):
            url = urljoin(f"{pin.repository.rstrip('/')}/", str(entry["urls"][0]))
            digest = entry.get("digest")
            return url, str(digest) if digest else None
    raise ChartCacheError(f"{pin.repository}: the index has no {pin.chart} {pin.version}")


def _get(http: httpx.Client, url: str) -> httpx.Response:
    try:
        response = http.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ChartCacheError(f"{url}: {exc}") from exc
    return response


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
