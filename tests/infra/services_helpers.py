"""Reading a render's objects and release values in the services tests."""

from __future__ import annotations

from typing import Any

import yaml

from tests.infra.conftest import Rendered

RELEASE = "kubernetes:helm.sh/v3:Release"


def manifest(rendered: Rendered, namespace: str, kind: str, name: str) -> dict[str, Any]:
    path = rendered.out / "manifests" / namespace / f"{kind.lower()}-{name}.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def manifests(rendered: Rendered, namespace: str, kind: str) -> list[dict[str, Any]]:
    directory = rendered.out / "manifests" / namespace
    return [yaml.safe_load(path.read_text()) for path in sorted(directory.glob(f"{kind.lower()}-*.yaml"))]


def release(rendered: Rendered, name: str) -> dict[str, Any]:
    inputs: dict[str, Any] = rendered.one(RELEASE, name)["inputs"]
    return inputs


def values(rendered: Rendered, name: str) -> dict[str, Any]:
    found: dict[str, Any] = release(rendered, name)["values"]
    return found
