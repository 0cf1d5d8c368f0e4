"""Every values key we pass to an upstream chart is one the chart reads.

Method (leaf change and compare): render the release with the program's values, then once per leaf
with only that leaf changed; a leaf whose change leaves every rendered file identical is not read.
A change is a value of the same type (a flipped bool, a number plus one, a string with a suffix, a list
with one more item), and when that shows nothing, the key set to null (Helm then drops it, so the
template sees the chart default or nothing). A render that fails counts as read: the chart looked at
the value. An explicit null of ours (which deletes a chart default) is probed by leaving the key out:
a null that deletes nothing is also a finding. Maps the chart reads as a whole (`env`,
`podAnnotations`, the collector's `config`, …) need no exception: a changed entry changes the output.
Lists of maps are walked item by item; lists of scalars are one leaf.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python

from infra.helm_render import Capabilities, crd_api_versions, template
from infra.invariants import Finding, RenderView

Path_ = tuple[str | int, ...]
_ABSENT = object()

# (chart, dotted key) -> why a key the templates do not read is still passed. Empty: none so far.
ALLOWED_UNREAD: dict[tuple[str, str], str] = {}


def unread_values(render: RenderView, cache: Path | None = None) -> list[Finding]:
    from infra.render import chart_source  # noqa: PLC0415 - the render imports the program lazily too

    capabilities = Capabilities(render.kubernetes_version, frozenset(crd_api_versions(render.objects)))
    findings = []
    for release in render.releases:
        inputs = release["inputs"]
        if not (inputs.get("repositoryOpts") or {}).get("repo"):
            continue  # our own charts: their values schemas reject unknown keys already
        values = inputs.get("values") or {}
        chart_name = str(inputs["chart"])
        with helm_python.Chart.load(str(chart_source(inputs, cache))) as chart:

            def digest(candidate: Mapping[str, Any], loaded: helm_python.Chart = chart) -> str | None:
                try:
                    files = template(
                        loaded,
                        candidate,
                        name=str(inputs["name"]),
                        namespace=str(inputs.get("namespace") or "default"),
                        capabilities=capabilities,
                    )
                except helm_python.HelmError:
                    return None
                return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()

            baseline = digest(values)
            for path, probes in _probes(values):
                key = _dotted(path)
                if (chart_name, key) in ALLOWED_UNREAD:
                    continue
                if all(digest(probe) == baseline for probe in probes):
                    what = "deletes no chart default" if _get(values, path) is None else "is not read by the chart"
                    findings.append(
                        Finding(
                            "values-keys",
                            f"release {inputs['name']} ({chart_name} {inputs.get('version')})",
                            f"{key} {what}",
                        )
                    )
    return findings


def _probes(values: Mapping[str, Any]) -> Iterator[tuple[Path_, list[dict[str, Any]]]]:
    for path, value in _leaves(values, ()):
        if value is None:
            yield path, [_with(values, path, _ABSENT)]
        else:
            yield path, [_with(values, path, _changed(value)), _with(values, path, None)]


def _leaves(value: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        return f"{value}probe"
    if isinstance(value, list):
        return [*value, "probe"]
    if isinstance(value, Mapping):
        return {**value, "probe": "probe"}
    return "probe"


def _with(values: Mapping[str, Any], path: Path_, replacement: Any) -> dict[str, Any]:
    changed: Any = copy.deepcopy(dict(values))
    node = changed
    for key in path[:-1]:
        node = node[key]
    if replacement is _ABSENT:
        del node[path[-1]]
    else:
        node[path[-1]] = replacement
    return dict(changed)


def _get(values: Any, path: Path_) -> Any:
    for key in path:
        values = values[key]
    return values


def _dotted(path: Path_) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text
