"""Compare two renders: added, removed and changed resources, and the fields that changed.

The output is Markdown meant for a pull-request comment: a one-line summary, then one bullet per
resource, with at most `_MAX_FIELDS` changed fields each (long values shortened) so a large change
still gives a readable comment. Resources are matched by type and logical name, which is how Pulumi
matches them too (a rename shows up as a removal plus an addition, as it would in `pulumi preview`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_MAX_FIELDS = 25
_MAX_VALUE = 80
_COMPARED = ("inputs", "parent", "provider", "options")


def diff_renders(old_dir: Path, new_dir: Path, stack: str) -> str:
    old, new = _inventory(old_dir), _inventory(new_dir)
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = {key: _changes(old[key], new[key]) for key in sorted(old.keys() & new.keys())}
    changed = {key: fields for key, fields in changed.items() if fields}
    lines = [f"### Platform render diff: `{stack}`", ""]
    if not (added or removed or changed):
        lines.append("No changes.")
        return "\n".join(lines)
    lines += [f"{len(added)} to add, {len(changed)} to change, {len(removed)} to remove.", ""]
    lines += [f"- **+** `{kind}` {name}" for kind, name in added]
    lines += [f"- **-** `{kind}` {name}" for kind, name in removed]
    for (kind, name), fields in changed.items():
        lines.append(f"- **~** `{kind}` {name}")
        lines += [f"  - `{path}`: {before} → {after}" for path, before, after in fields[:_MAX_FIELDS]]
        if len(fields) > _MAX_FIELDS:
            lines.append(f"  - … and {len(fields) - _MAX_FIELDS} more fields")
    return "\n".join(lines)


def _inventory(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    document = json.loads((directory / "resources.json").read_text())
    return {(item["type"], item["name"]): item for item in document["resources"]}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    before = dict(_flatten({key: old[key] for key in _COMPARED if old.get(key) is not None}))
    after = dict(_flatten({key: new[key] for key in _COMPARED if new.get(key) is not None}))
    paths = sorted(before.keys() | after.keys())
    return [
        (path.removeprefix("inputs."), _show(before.get(path)), _show(after.get(path)))
        for path in paths
        if before.get(path) != after.get(path)
    ]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        items = []
        for key, item in value.items():
            items += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(value, list) and value:
        items = []
        for index, item in enumerate(value):
            items += _flatten(item, f"{prefix}[{index}]")
        return items
    return [(prefix, json.dumps(value, sort_keys=True))]


def _show(value: str | None) -> str:
    if value is None:
        return "(none)"
    text = value if len(value) <= _MAX_VALUE else value[: _MAX_VALUE - 1] + "…"
    return f"`{text}`"
