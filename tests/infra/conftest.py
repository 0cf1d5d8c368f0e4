"""Renders of the three stacks, made once per session and shared (each takes a few seconds).

The full render expands the upstream charts from the chart cache (`JAN_CHART_CACHE`); without one
every render test skips, saying so, except in CI (`CI` set), where a missing cache is a failure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from infra import chart_cache, render
from infra.invariants import RenderView
from infra.versions import UPSTREAM_CHARTS

STACKS = ("dev", "staging", "prod")


@dataclass(frozen=True)
class Rendered:  # not slotted: `view` is cached on the instance
    out: Path
    exit_code: int
    resources: list[dict[str, Any]]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [item for item in self.resources if item["type"] == type_]

    def one(self, type_: str, name: str) -> dict[str, Any]:
        (item,) = [item for item in self.of_type(type_) if item["name"] == name]
        return item

    @cached_property
    def view(self) -> RenderView:
        return RenderView.load(self.out)


def require_chart_cache() -> None:
    """Skip (fail in CI) unless the chart cache holds every pinned upstream chart."""
    missing = chart_cache.missing(UPSTREAM_CHARTS)
    if missing:
        names = ", ".join(f"{pin.chart} {pin.version}" for pin in missing)
        reason = (
            f"the chart cache {chart_cache.cache_dir()} lacks {names}: set {chart_cache.ENV} "
            "(e.g. to ../shared/upstream-charts) or run `jan-server charts pull`"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def render_stack(stack: str, out: Path, diff: Path | None = None) -> Rendered:
    code = render.main(stack, str(out), str(diff) if diff else None)
    document = json.loads((out / "resources.json").read_text())
    return Rendered(out, code, document["resources"])


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    require_chart_cache()
    root = tmp_path_factory.mktemp("renders")
    return {stack: render_stack(stack, root / stack) for stack in STACKS}


@pytest.fixture(scope="session")
def prod(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["prod"]


@pytest.fixture(scope="session")
def staging(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["staging"]
