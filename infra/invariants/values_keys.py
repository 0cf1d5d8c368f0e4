"""Every values key we pass to an upstream chart is one the chart reads.

Method (leaf change and compare): render the release with the program's values, then once per leaf
with only that leaf changed; a leaf whose change leaves every rendered file identical is not read.
A change is a value of the same type (a flipped bool, a number plus one, a string with a suffix, a list
with one more item), and when that shows nothing, the key set to null (Helm then drops it, so the
template sees the chart default or nothing). A render that fails counts as read: the chart looked at
the value. Lines whose content is random (generated passwords) are left out of the comparison. An
explicit null of ours (which deletes a chart default) is probed by leaving the key out: a null that
deletes nothing is also a finding. Maps the chart reads as a whole (`env`, `podAnnotations`, …) need
no exception: a changed entry changes the output; the slow collector chart's `config` is probed as
one leaf (`WHOLE_MAPS`). Lists of maps are walked item by item; lists of scalars are one leaf.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python

from infra.helm_render import Capabilities, crd_api_versions, template
from infra.invariants import Finding, RenderView

Path_ = tuple[str | int, ...]
_ABSENT = object()

# (chart, dotted key) -> why a key the probes see as unread is still passed.
ALLOWED_UNREAD: dict[tuple[str, str], str] = {
    ("nvidia-device-plugin", "nfd.enabled"): (
        "decides the nfd subchart's condition `nfd.enabled,gfd.enabled` under Helm 3, which Pulumi's "
        "Release runs (the first path set wins); helm-python-sdk's Helm 4 lets gfd.enabled decide"
    ),
}

# chart -> {dotted key: why}: free-form maps the chart reads as a whole, probed as one leaf (their
# explicit nulls still one by one), because probing each leaf costs a render each.
WHOLE_MAPS: dict[str, dict[str, str]] = {
    "opentelemetry-collector": {
        "config": "merged with the chart's default config and written whole into the collector's "
        "ConfigMap (one render of this chart takes about a second)"
    },
}


def unread_values(render: RenderView, cache: Path | None = None) -> list[Finding]:
    from infra.render import chart_source  # noqa: PLC0415 - the render imports the program lazily too

    capabilities = Capabilities(render.kubernetes_version, frozenset(crd_api_versions(render.objects)))
    findings = []
    for release in render.releases:
        inputs = release["inputs"]
        if not (inputs.get("repositoryOpts") or {}).get("repo"):
            continue  # our own charts: their values schemas reject unknown keys already
        with helm_python.Chart.load(str(chart_source(inputs, cache))) as chart:
            findings += _unread_in_release(chart, inputs, capabilities)
    return findings


def _unread_in_release(
    chart: helm_python.Chart, inputs: Mapping[str, Any], capabilities: Capabilities
) -> list[Finding]:
    values = inputs.get("values") or {}
    chart_name = str(inputs["chart"])
    render_files = _renderer(
        chart, str(inputs["name"]), str(inputs.get("namespace") or "default"), capabilities
    )
    baseline = render_files(values) or {}
    # Lines with random content (generated passwords, keys) differ between two identical renders.
    noise = _random_lines(baseline, render_files(values) or {})
    findings = []
    for path, probes in _probes(values, WHOLE_MAPS.get(chart_name, {})):
        key = _dotted(path)
        if (chart_name, key) in ALLOWED_UNREAD:
            continue
        if all(_same(render_files(probe), baseline, noise) for probe in probes):
            what = "deletes no chart default" if _get(values, path) is None else "is not read by the chart"
            subject = f"release {inputs['name']} ({chart_name} {inputs.get('version')})"
            findings.append(Finding("values-keys", subject, f"{key} {what}"))
    return findings


def _random_lines(first: Mapping[str, str], second: Mapping[str, str]) -> dict[str, set[int]]:
    """Per file, the line numbers whose text differs between two renders of the same values."""
    noise = {}
    for name in first.keys() & second.keys():
        if first[name] != second[name]:
            a, b = first[name].splitlines(), second[name].splitlines()
            noise[name] = {i for i in range(max(len(a), len(b))) if i >= min(len(a), len(b)) or a[i] != b[i]}
    return noise


def _same(
    files: Mapping[str, str] | None, baseline: Mapping[str, str], noise: Mapping[str, set[int]]
) -> bool:
    """Whether a probe's render equals the baseline, random lines aside (a failed render differs)."""
    if files is None or files.keys() != baseline.keys():
        return False
    for name, text in files.items():
        if name not in noise:
            if text != baseline[name]:
                return False
            continue
        lines, expected = text.splitlines(), baseline[name].splitlines()
        if len(lines) != len(expected):
            return False
        if any(
            line != want and index not in noise[name]
            for index, (line, want) in enumerate(zip(lines, expected, strict=True))
        ):
            return False
    return True


def _renderer(
    chart: helm_python.Chart, name: str, namespace: str, capabilities: Capabilities
) -> Callable[[Mapping[str, Any]], dict[str, str] | None]:
    def render_files(candidate: Mapping[str, Any]) -> dict[str, str] | None:
        try:
            return template(chart, candidate, name=name, namespace=namespace, capabilities=capabilities)
        except helm_python.HelmError:
            return None  # the chart looked at the value (a schema or a template refused it)

    return render_files


def _probes(
    values: Mapping[str, Any], whole: Mapping[str, str]
) -> Iterator[tuple[Path_, list[dict[str, Any]]]]:
    for path, value in _leaves(values, (), frozenset(whole)):
        if value is None:
            yield path, [_with(values, path, _ABSENT)]
        else:
            yield path, [_with(values, path, _changed(value)), _with(values, path, None)]


def _leaves(value: Any, path: Path_, whole: frozenset[str] = frozenset()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(value, Mapping) and value and _dotted(path) in whole:
        yield path, value  # probed as one leaf; its nulls still one by one
        for inner, item in _leaves(value, path):
            if item is None:
                yield inner, item
    elif isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*path, key), whole)
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index), whole)
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
