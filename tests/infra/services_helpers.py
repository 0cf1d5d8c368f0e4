"""Reading a render's objects and release values in the services tests."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.manifests import manifest_path
from tests.infra.conftest import Rendered

RELEASE = "kubernetes:helm.sh/v3:Release"


def manifest_file(rendered: Rendered, namespace: str | None, kind: str, name: str) -> Path:
    """Where the render wrote an object, by the render's own naming (`infra.manifests`)."""
    return rendered.out / "manifests" / manifest_path(namespace, kind, name)


def manifest(rendered: Rendered, namespace: str, kind: str, name: str) -> dict[str, Any]:
    path = manifest_file(rendered, namespace, kind, name)
    if not path.is_file():
        pytest.fail(f"the render has no {kind} {namespace}/{name} (no {path.relative_to(rendered.out)})")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def manifests(rendered: Rendered, namespace: str, kind: str) -> list[dict[str, Any]]:
    paths = sorted((rendered.out / "manifests").glob(manifest_path(namespace, kind, "*")))
    return [yaml.safe_load(path.read_text()) for path in paths]


def has_manifest(rendered: Rendered, namespace: str, kind: str, name: str) -> bool:
    """Whether the render has such an object (`name` may be a glob). Asked of the render's objects
    and of its files by the render's naming, which must agree: a negative answer cannot come from a
    path built by hand that the render no longer writes."""
    in_objects = any(
        (body.get("metadata") or {}).get("namespace") == namespace
        and fnmatch.fnmatchcase(str((body.get("metadata") or {}).get("name")), name)
        for body in rendered.view.of_kind(kind)
    )
    in_files = any((rendered.out / "manifests").glob(manifest_path(namespace, kind, name)))
    assert in_objects == in_files, f"the render's files and objects disagree on {kind} {namespace}/{name}"
    return in_objects


def release(rendered: Rendered, name: str) -> dict[str, Any]:
    inputs: dict[str, Any] = rendered.one(RELEASE, name)["inputs"]
    return inputs


def values(rendered: Rendered, name: str) -> dict[str, Any]:
    found: dict[str, Any] = release(rendered, name)["values"]
    return found
