"""`jan-server render --stack <dev|staging|prod|path> --out <dir> [--diff <old-dir>]`.

Runs the platform program offline (`infra.mock_engine`) and writes its full desired state:
- `<out>/resources.json`: every resource (type, logical name, parent, provider, inputs with secrets
  redacted), including the objects inside Helm releases, which Pulumi itself only sees as one release;
- `<out>/manifests/`: every Kubernetes object as YAML, validated strictly against the schemas of the
  stack's Kubernetes version. Any invalid object makes the command exit 1; a bad stack file exits 2.
With `--diff`, it then prints what changed against an earlier render, as Markdown for a PR comment.
The output is deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra import manifests, mock_engine
from infra.config import REPO_ROOT, ConfigError, StackConfig, parse, stack_file, stack_values
from infra.render_diff import diff_renders

_RELEASE = "kubernetes:helm.sh/v3:Release"
_NOT_OBJECTS = ("pulumi:providers:", "kubernetes:helm.sh/")


def main(stack: str, out: str, diff: str | None = None) -> int:
    try:
        name, values, config = read_stack(stack)
    except (ConfigError, OSError) as exc:
        print(exc, file=sys.stderr)  # noqa: T201 - a CLI
        return 2
    records = render(name, values, config)
    objects = kubernetes_objects(records)
    found = manifests.to_manifests(objects)
    write(Path(out), name, config, records, found)
    errors = manifests.validate(found, config.cluster.kubernetes_version)
    for error in errors:
        print(f"invalid manifest {error}", file=sys.stderr)  # noqa: T201
    print(  # noqa: T201
        f"rendered stack {name}: {len(records)} resources, {len(found)} Kubernetes objects "
        f"({'all valid' if not errors else f'{len(errors)} invalid'} for Kubernetes "
        f"{config.cluster.kubernetes_version}) -> {out}"
    )
    if diff is not None:
        try:
            print(diff_renders(Path(diff), Path(out), name))  # noqa: T201
        except OSError as exc:
            print(f"cannot diff against {diff}: {exc}", file=sys.stderr)  # noqa: T201
            return 2
    return 1 if errors else 0


def read_stack(stack: str) -> tuple[str, dict[str, Any], StackConfig]:
    """A stack name (`prod`) or a path to a stack file; returns its name, raw values and parsed config."""
    path = Path(stack) if stack.endswith((".yaml", ".yml")) else stack_file(stack)
    values = stack_values(path)
    name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    return name, values, parse(values)


def render(name: str, values: Mapping[str, Any], config: StackConfig) -> list[mock_engine.Record]:
    from infra.program import main as program  # noqa: PLC0415 - imports the AWS SDK (~1 s)

    records = mock_engine.run(program, stack=name, config=values, region=config.region or "us-east-1")
    return records + _expand_releases(records)


def kubernetes_objects(records: list[mock_engine.Record]) -> list[dict[str, Any]]:
    return [
        record.inputs
        for record in records
        if record.custom
        and record.type.startswith("kubernetes:")
        and not record.type.startswith(_NOT_OBJECTS)
    ]


def write(
    out: Path,
    name: str,
    config: StackConfig,
    records: list[mock_engine.Record],
    found: list[manifests.Manifest],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "manifests", ignore_errors=True)
    inventory = {
        "stack": name,
        "environment": config.environment.value,
        "kubernetesVersion": config.cluster.kubernetes_version,
        "resources": [
            {
                "type": record.type,
                "name": record.name,
                "parent": record.parent,
                "provider": record.provider,
                "inputs": manifests.redact(record.inputs),
                **({"options": record.options} if record.options else {}),
            }
            for record in records
        ],
    }
    (out / "resources.json").write_text(json.dumps(inventory, indent=2, sort_keys=True) + "\n")
    manifests.write(found, out / "manifests")


def _expand_releases(records: list[mock_engine.Record]) -> list[mock_engine.Record]:
    """The objects inside each Helm release, as records parented to the release."""
    expanded = []
    for record in records:
        if record.type != _RELEASE:
            continue
        inputs = record.inputs
        if inputs.get("repositoryOpts"):
            continue  # an upstream chart: installed from its repository, not available offline
        chart_dir = Path(inputs["chart"])
        if not chart_dir.is_absolute():
            chart_dir = REPO_ROOT / chart_dir
        objects = manifests.render_chart(
            str(chart_dir), inputs.get("values") or {}, inputs["name"], inputs.get("namespace")
        )
        for body in objects:
            api_version, kind = str(body["apiVersion"]), str(body["kind"])
            group_version = api_version if "/" in api_version else f"core/{api_version}"
            meta = body.get("metadata") or {}
            expanded.append(
                mock_engine.Record(
                    urn=f"{record.urn}$expanded::{kind}::{meta.get('namespace', '')}/{meta.get('name', '')}",
                    type=f"kubernetes:{group_version}:{kind}",
                    name=f"{meta.get('namespace') or '_cluster'}/{meta.get('name', '')}",
                    parent=f"{record.type}::{record.name}",
                    provider=record.provider,
                    custom=True,
                    inputs=body,
                    options={},
                )
            )
    return expanded
