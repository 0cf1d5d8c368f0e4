"""Upstream chart archives for tests: `JAN_CHART_CACHE`, else `<repo>/../shared/upstream-charts`.

A test that needs one skips, saying where it looked, when the archive is not there.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from infra.config import REPO_ROOT
from infra.versions import ChartPin


def cache_dir() -> Path:
    configured = os.environ.get("JAN_CHART_CACHE")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "upstream-charts"


def archive(pin: ChartPin) -> Path:
    path = cache_dir() / f"{pin.chart}-{pin.version}.tgz"
    if not path.is_file():
        pytest.skip(f"no chart archive {path.name} in {cache_dir()} (set JAN_CHART_CACHE)")
    return path


def render(pin: ChartPin, values: dict[str, Any], *, name: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's objects with these values, as Helm renders them."""
    with helm_python.Chart.load(str(archive(pin))) as chart:
        files = chart.render(values, name=name, namespace=namespace)
    objects = []
    for path, text in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc.get("kind")]
    return objects


def app_version(pin: ChartPin) -> str:
    with tarfile.open(archive(pin)) as bundle:
        member = bundle.extractfile(f"{pin.chart}/Chart.yaml")
        assert member is not None
        return str(yaml.safe_load(member.read())["appVersion"])
