"""The one way the program deploys a Helm chart: ours (charts/) or a pinned upstream one.

Upstream charts are installed from their repositories at the version pinned in `infra/versions.py`
(`upstream_release()`); nothing upstream is copied into this repository. The offline render expands
such a release from the local chart cache (`infra.chart_cache`, filled by `jan-server charts pull`)
with the values recorded for it. Our own charts come in two shapes, both from the local chart
directory so that `pulumi up` and the offline render see the same chart:
- `chart()` is `helm.v3.Chart`: Pulumi renders the chart (the `kubernetes:helm:template` invoke) and owns
  every object, so previews and the render show per-object diffs. Use it unless the chart needs Helm
  hooks or ships CRDs that its own objects use.
- `release()` is `helm.v3.Release`: a real Helm release (hooks, CRD install order). Pulumi sees only the
  release; the offline render expands it from its recorded inputs so its objects still get validated
  and diffed.
`helm.v4.Chart` is not used: it is a remote component, opaque under the mock engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.config import REPO_ROOT
from infra.versions import ChartPin

OUR_CHARTS_DIR = REPO_ROOT / "charts"


@dataclass(frozen=True, slots=True)
class ChartSource:
    """One of our chart directories and the version its Chart.yaml declares."""

    name: str
    version: str
    directory: Path

    @classmethod
    def ours(cls, name: str) -> ChartSource:
        """One of our charts; its version is whatever its Chart.yaml says (the repository version)."""
        directory = OUR_CHARTS_DIR / name
        return cls(name, declared_version(directory), directory)


def declared_version(directory: Path) -> str:
    document = yaml.safe_load((directory / "Chart.yaml").read_text())
    return str(document["version"])


def chart(
    release_name: str,
    source: ChartSource,
    *,
    namespace: pulumi.Input[str],
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Chart:
    return k8s.helm.v3.Chart(
        release_name,
        k8s.helm.v3.LocalChartOpts(path=str(source.directory), namespace=namespace, values=dict(values)),
        opts,
    )


def release(
    release_name: str,
    source: ChartSource,
    *,
    namespace: pulumi.Input[str],
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        release_name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name,
            # A local chart: Helm takes its version from its Chart.yaml.
            chart=str(source.directory),
            namespace=namespace,
            values=dict(values),
            atomic=True,
            cleanup_on_fail=True,
        ),
        opts,
    )


def upstream_release(
    release_name: str,
    pin: ChartPin,
    *,
    namespace: pulumi.Input[str],
    values: Mapping[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    """A pinned upstream chart installed from its repository as a Helm release."""
    return k8s.helm.v3.Release(
        release_name,
        k8s.helm.v3.ReleaseArgs(
            name=release_name,
            chart=pin.chart,
            version=pin.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository),
            namespace=namespace,
            values=dict(values),
            atomic=True,
            cleanup_on_fail=True,
        ),
        opts,
    )
