"""Render our Helm charts offline, the way the platform program does (helm-python-sdk, no helm binary).

A `ChartCase` is one chart rendered with one values file (or its defaults). `CASES` lists every case the
tests and the checkov gate cover: each chart with its defaults, and each `ci/*-values.yaml` file, which
holds a realistic configuration (one per app for the generic app chart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
CHART_NAMES = ("jan-app", "searxng", "sandboxfusion")
# The oldest Kubernetes the charts declare (kubeVersion) and a current one.
K8S_VERSIONS = ("1.29.0", "1.34.0")

# Each chart's release name and namespace in a realistic install.
_RELEASES = {
    "jan-app": ("llm-api", "jan"),
    "searxng": ("searxng", "search"),
    "sandboxfusion": ("sandboxfusion", "sandbox"),
}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class ChartCase:
    chart: str
    values_file: Path | None
    release: str
    namespace: str

    @property
    def id(self) -> str:
        return f"{self.chart}:{self.values_file.stem if self.values_file else 'defaults'}"

    def values(self) -> dict[str, Any]:
        if self.values_file is None:
            return {}
        loaded: dict[str, Any] = yaml.safe_load(self.values_file.read_text())
        return loaded


def _cases() -> list[ChartCase]:
    cases = []
    for chart in CHART_NAMES:
        release, namespace = _RELEASES[chart]
        cases.append(ChartCase(chart, None, release, namespace))
        for values_file in sorted((CHARTS / chart / "ci").glob("*-values.yaml")):
            values = yaml.safe_load(values_file.read_text())
            name = values.get("app", release) if chart == "jan-app" else release
            cases.append(ChartCase(chart, values_file, name, namespace))
    return cases


CASES = _cases()


def render_files(chart: str, values: dict[str, Any], release: str, namespace: str) -> dict[str, str]:
    with helm.Chart.load(str(CHARTS / chart)) as loaded:
        rendered: dict[str, str] = loaded.render(values, name=release, namespace=namespace)
    return rendered


def render(
    chart: str, values: dict[str, Any] | None = None, *, release: str, namespace: str
) -> list[Manifest]:
    """Every object the chart renders, hooks included, in file order."""
    files = render_files(chart, values or {}, release, namespace)
    objects: list[Manifest] = []
    for path in sorted(files):
        if not path.endswith((".yaml", ".yml")):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(files[path]) if doc)
    return objects


def render_case(case: ChartCase) -> list[Manifest]:
    return render(case.chart, case.values(), release=case.release, namespace=case.namespace)


def by_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


def pod_specs(objects: list[Manifest]) -> list[tuple[Manifest, Manifest]]:
    """(owner, pod spec) for every workload: Deployments, Jobs."""
    return [(o, o["spec"]["template"]["spec"]) for o in objects if o["kind"] in ("Deployment", "Job")]


def write_all(out: Path) -> list[Path]:
    """Render every case into `out/<chart>/<values>.yaml` (for scanners such as checkov)."""
    written = []
    for case in CASES:
        target = out / case.chart / f"{case.values_file.stem if case.values_file else 'defaults'}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump_all(render_case(case), sort_keys=False))
        written.append(target)
    return written
