"""The one way the program deploys a Helm chart: ours (charts/) or a pinned upstream one.

Upstream charts are installed from their repositories at the version pinned in `infra/versions.py`
(`upstream_release()`); nothing upstream is copied into this repository. The offline render records
such a release (repository, chart, version, values) but cannot expand it without the network, so
tests assert on its values. Our own charts come in two shapes, both from the local chart directory so
that `pulumi up` and the offline render see the same chart:
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
DEFAULT_TIMEOUT = 600
# How long Helm may wait for a release to become ready (seconds), per chart (`DEFAULT_TIMEOUT` for
# a chart not listed). Helm's default (300 s)
# with an atomic install rolls back a first install whose images are still being pulled on new nodes;
# these are cold-start estimates (image pulls on an empty node, load balancers, database start-up) with
# a margin, to be replaced by measured times from the first `pulumi up` of each stack.
TIMEOUTS: dict[str, int] = {
    "kube-prometheus-stack": 900,  # CRDs, operator, Prometheus with its volume
    "prometheus-postgres-exporter": 600,
    "opentelemetry-collector": 600,
    "jaeger": 600,
    "grafana": 600,
    "dcgm-exporter": 600,
    "kong": 900,  # the NLB and its health checks
    "keycloakx": 1200,  # JVM start, schema migration, realm import
    "cloudnative-pg": 600,
    "cluster": 900,  # the Postgres instances and their volumes
    "seaweedfs": 600,
    "nvidia-device-plugin": 600,
    "keda": 600,
    "cluster-autoscaler": 600,
    "aws-load-balancer-controller": 600,
    "jan-app": 900,  # the migration hook Job pulls the image and migrates before the pods start
}


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
    timeout: int | None = None,
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
            timeout=timeout or TIMEOUTS.get(source.name, DEFAULT_TIMEOUT),
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
    timeout: int | None = None,
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
            timeout=timeout or TIMEOUTS.get(pin.chart, DEFAULT_TIMEOUT),
        ),
        opts,
    )
