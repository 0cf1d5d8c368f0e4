"""Renders of the three stacks, made once per session and shared (each takes about a second)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra import render

STACKS = ("dev", "staging", "prod")


@dataclass(frozen=True)
class Rendered:
    out: Path
    exit_code: int
    resources: list[dict[str, Any]]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [item for item in self.resources if item["type"] == type_]

    def one(self, type_: str, name: str) -> dict[str, Any]:
        (item,) = [item for item in self.of_type(type_) if item["name"] == name]
        return item


def render_stack(stack: str, out: Path, diff: Path | None = None) -> Rendered:
    code = render.main(stack, str(out), str(diff) if diff else None)
    document = json.loads((out / "resources.json").read_text())
    return Rendered(out, code, document["resources"])


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    root = tmp_path_factory.mktemp("renders")
    return {stack: render_stack(stack, root / stack) for stack in STACKS}


@pytest.fixture(scope="session")
def prod(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["prod"]


@pytest.fixture(scope="session")
def staging(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["staging"]
