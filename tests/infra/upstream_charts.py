"""Render a pinned upstream chart archive as a cluster would, for tests that check our values against
the real templates rather than our reading of them.

The archives come from the chart cache: `JAN_CHART_CACHE`, else `<repo>/../shared/upstream-charts`.
Without it the calling test is skipped with the reason. The render passes the cluster's Kubernetes
version and the API versions the stack installs (monitoring.coreos.com for the ServiceMonitors), since
charts gate objects on `.Capabilities`; helm-python-sdk takes those only through its native call.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from helm_python import _native

from infra.config import REPO_ROOT
from infra.versions import CHARTS

KUBE_VERSION = "v1.34.0"
API_VERSIONS = (
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "postgresql.cnpg.io/v1",
    "postgresql.cnpg.io/v1/Cluster",
)


def chart_cache() -> Path:
    configured = os.environ.get("JAN_CHART_CACHE")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "upstream-charts"


def archive(key: str, version: str | None = None) -> Path:
    """The archive of `CHARTS[key]` at its pin (or `version`); skips the test when it is absent."""
    pin = CHARTS[key]
    path = chart_cache() / f"{pin.chart}-{version or pin.version}.tgz"
    if not path.is_file():
        pytest.skip(f"no upstream chart cache: {path} is missing (set JAN_CHART_CACHE)")
    return path


def chart_yaml(key: str, version: str | None = None) -> dict[str, Any]:
    """The archive's own Chart.yaml (name, version, appVersion)."""
    pin = CHARTS[key]
    with tarfile.open(archive(key, version)) as packed:
        member = packed.extractfile(f"{pin.chart}/Chart.yaml")
        assert member is not None
        loaded: dict[str, Any] = yaml.safe_load(member.read())
    return loaded


def render(
    key: str, values: Mapping[str, Any], *, name: str, namespace: str, version: str | None = None
) -> list[dict[str, Any]]:
    """The objects `helm install` would create (hooks included, test hooks left out)."""
    options = {
        "name": name,
        "namespace": namespace,
        "kube_version": KUBE_VERSION,
        "api_versions": list(API_VERSIONS),
    }
    with helm_python.Chart.load(str(archive(key, version))) as chart:
        raw = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
    files: dict[str, str] = json.loads(raw)
    objects = []
    for filename in sorted(files):
        if not filename.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(files[filename]):
            annotations = (document or {}).get("metadata", {}).get("annotations") or {}
            if isinstance(document, dict) and annotations.get("helm.sh/hook") != "test":
                objects.append(document)
    return objects


def ignored_leaves(
    key: str, values: Mapping[str, Any], *, name: str, namespace: str, version: str | None = None
) -> list[str]:
    """The value paths whose change leaves the render unchanged: keys the chart does not read.

    Each leaf is changed on its own (a bool flipped, a number incremented, a string or list extended);
    a render that fails on the changed value counts as read. Fields that differ between two renders of
    the same values (generated passwords, keys) are left out of the comparison.
    """

    def flat(objects: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(_flatten(objects, ""))

    first = flat(render(key, values, name=name, namespace=namespace, version=version))
    second = flat(render(key, values, name=name, namespace=namespace, version=version))
    noise = {path for path in first.keys() | second.keys() if first.get(path) != second.get(path)}
    baseline = {path: value for path, value in first.items() if path not in noise}
    ignored = []
    for path, leaf in _leaves(values, ()):
        changed = _with(values, path, _changed(leaf))
        try:
            rendered = flat(render(key, changed, name=name, namespace=namespace, version=version))
        except (helm_python.HelmError, ValueError):
            continue
        if {p: v for p, v in rendered.items() if p not in noise} == baseline:
            ignored.append(".".join(path))
    return ignored


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for child_key, child in value.items():
            yield from _flatten(child, f"{path}/{child_key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _flatten(child, f"{path}[{index}]")
    else:
        yield path, value


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping) and value:
        for child_key, child in value.items():
            yield from _leaves(child, (*path, str(child_key)))
    elif value is not None:
        yield path, value


def _changed(leaf: Any) -> Any:
    if isinstance(leaf, bool):
        return not leaf
    if isinstance(leaf, int | float):
        return leaf + 1
    if isinstance(leaf, str):
        return leaf + "1"
    if isinstance(leaf, list):
        return [*leaf, leaf[-1]] if leaf else ["x"]
    return {"changed": True}


def _with(values: Mapping[str, Any], path: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(values))
    node = copied
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = leaf
    return copied


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [item for item in of_kind(objects, kind) if name is None or item["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[f['metadata']['name'] for f in found]}"
    )
    return found[0]


def containers(workload: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def container_ports(workload: Mapping[str, Any]) -> dict[str, int]:
    """Every declared container port, by name (and by number as a string)."""
    ports: dict[str, int] = {}
    for container in containers(workload):
        for port in container.get("ports", []):
            ports[str(port["containerPort"])] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports
