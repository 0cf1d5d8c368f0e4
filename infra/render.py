"""`jan-server render --stack <dev|staging|prod|path> --out <dir> [--diff <old-dir>]`.

Runs the platform program offline (`infra.mock_engine`) and writes its full desired state:
- `<out>/resources.json`: every resource (type, logical name, parent, provider, inputs with secrets
  redacted), including the objects inside Helm releases, which Pulumi itself only sees as one release;
- `<out>/manifests/`: every Kubernetes object as YAML, validated strictly against the schemas of the
  stack's Kubernetes version. Any invalid object makes the command exit 1; a bad stack file or an
  upstream chart missing from the chart cache exits 2.
Every release is expanded (`expand_releases`): ours from charts/, upstream ones from the chart cache
(`infra.chart_cache`), with the values the program sends and the cluster's capabilities.
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

import helm_python

from infra import chart_cache, manifests, mock_engine
from infra.config import REPO_ROOT, ConfigError, StackConfig, parse, stack_file, stack_values
from infra.helm_render import Capabilities, ReleaseRender, gates_on_api_versions, render_release, template
from infra.render_diff import diff_renders
from infra.versions import ChartPin

_RELEASE = "kubernetes:helm.sh/v3:Release"
_NOT_OBJECTS = ("pulumi:providers:", "kubernetes:helm.sh/")


def main(stack: str, out: str, diff: str | None = None) -> int:
    try:
        name, values, config = read_stack(stack)
    except (ConfigError, OSError) as exc:
        print(exc, file=sys.stderr)  # noqa: T201 - a CLI
        return 2
    try:
        records = render(name, values, config)
    except chart_cache.ChartCacheError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 2
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


def read_stack(stack: str, cwd: Path | None = None) -> tuple[str, dict[str, Any], StackConfig]:
    """A stack name (`prod`) or a path to a stack file; returns its name, raw values and parsed config.

    A name is looked up in the Pulumi project the command runs in (the nearest directory from `cwd`
    upwards with a `Pulumi.yaml`), as `pulumi` itself does, never in the installed package: a render
    must show the checkout being reviewed.
    """
    if stack.endswith((".yaml", ".yml")):
        path = Path(stack)
    else:
        path = project_root(cwd or Path.cwd()) / stack_file(stack).relative_to(REPO_ROOT)
    values = stack_values(path)
    name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    return name, values, parse(values)


def project_root(start: Path) -> Path:
    for directory in (start.resolve(), *start.resolve().parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    raise ConfigError(
        f"no Pulumi project (Pulumi.yaml) in {start} or above it: run from the project or pass a stack file"
    )


def render(
    name: str, values: Mapping[str, Any], config: StackConfig, cache: Path | None = None
) -> list[mock_engine.Record]:
    """Every resource the program registers plus every object inside its Helm releases."""
    from infra.program import main as program  # noqa: PLC0415 - imports the AWS SDK (~1 s)

    version = config.cluster.kubernetes_version
    records = mock_engine.run(
        program, stack=name, config=values, region=config.region or "us-east-1", kube_version=version
    )
    return records + expand_releases(records, version, cache)


def kubernetes_objects(records: list[mock_engine.Record]) -> list[dict[str, Any]]:
    return [record.inputs for record in kubernetes_records(records)]


def kubernetes_records(records: list[mock_engine.Record]) -> list[mock_engine.Record]:
    return [
        record
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
    (out / "resources.json").write_text(_one_resource_per_line(inventory))
    manifests.write(found, out / "manifests")


def _one_resource_per_line(inventory: dict[str, Any]) -> str:
    """JSON with one resource per line: diffable line by line, and written by the C encoder (an
    indented dump of the upstream CRDs takes seconds)."""
    resources = inventory.pop("resources")
    head = json.dumps(inventory, sort_keys=True)[:-1]
    lines = ",\n".join(json.dumps(resource, sort_keys=True) for resource in resources)
    return f'{head}, "resources": [\n{lines}\n]}}\n'


def expand_releases(
    records: list[mock_engine.Record], kube_version: str, cache: Path | None = None
) -> list[mock_engine.Record]:
    """The objects inside each Helm release (ours from charts/, upstream from the chart cache), as
    records parented to the release, rendered with the values the program sends and the cluster's
    capabilities: its Kubernetes version and every CRD the render installs.

    The CRDs a release's templates create are only known after rendering, and a chart may gate objects
    on them (Kong's ServiceMonitor on `monitoring.coreos.com/v1`), so rendering repeats until the set
    of API versions stops growing (in practice twice at most).
    """
    releases = [(record, chart_source(record.inputs, cache)) for record in records if record.type == _RELEASE]
    own_crds = [record.inputs for record in kubernetes_records(records)]
    capabilities = Capabilities(kube_version).with_crds(own_crds)
    rendered = [(record, _render(record, source, capabilities)) for record, source in releases]
    while True:
        grown = capabilities.with_crds(
            crd for _, release in rendered for crd in [*release.crds, *release.template_crds()]
        )
        if grown == capabilities:
            break
        capabilities = grown
        rendered = [
            (
                record,
                _render(record, source, capabilities, release) if gates_on_api_versions(source) else release,
            )
            for (record, release), (_, source) in zip(rendered, releases, strict=True)
        ]
    return [_child(record, body) for record, release in rendered for body in release.objects()]


def _render(
    record: mock_engine.Record, source: Path, capabilities: Capabilities, earlier: ReleaseRender | None = None
) -> ReleaseRender:
    inputs = record.inputs
    values, name, namespace = inputs.get("values") or {}, inputs["name"], inputs.get("namespace")
    if earlier is None:
        return render_release(source, values, name, namespace, capabilities)
    # Only the templates can change with the capabilities; the shipped CRDs stay.
    with helm_python.Chart.load(str(source)) as chart:
        files = template(
            chart, values, name=name, namespace=namespace or "default", capabilities=capabilities
        )
    return ReleaseRender(earlier.crds, files, namespace)


def chart_source(inputs: Mapping[str, Any], cache: Path | None = None) -> Path:
    """Where a release's chart is: an upstream one in the chart cache, ours in charts/."""
    repository = (inputs.get("repositoryOpts") or {}).get("repo")
    if repository:
        return chart_cache.require(ChartPin(repository, inputs["chart"], str(inputs["version"])), cache)
    chart_dir = Path(inputs["chart"])
    return chart_dir if chart_dir.is_absolute() else REPO_ROOT / chart_dir


def _child(release: mock_engine.Record, body: dict[str, Any]) -> mock_engine.Record:
    api_version, kind = str(body["apiVersion"]), str(body["kind"])
    group_version = api_version if "/" in api_version else f"core/{api_version}"
    meta = body.get("metadata") or {}
    return mock_engine.Record(
        urn=f"{release.urn}$expanded::{kind}::{meta.get('namespace', '')}/{meta.get('name', '')}",
        type=f"kubernetes:{group_version}:{kind}",
        name=f"{meta.get('namespace') or '_cluster'}/{meta.get('name', '')}",
        parent=f"{release.type}::{release.name}",
        provider=release.provider,
        custom=True,
        inputs=body,
        options={},
    )
