"""Every upstream chart and image version the platform deploys, in one place.

Upstream charts are installed from their repositories at exactly the version pinned here (a Helm
release per chart); nothing upstream is copied into this repository. To upgrade, change the version
here and review `make render`'s resource diff and the chart's release notes.

No `latest` anywhere. EKS add-on versions are left to EKS (the default for the cluster version), which
keeps them matched to `cluster.kubernetesVersion`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamChart:
    name: str
    version: str
    repository: str


NVIDIA_DEVICE_PLUGIN = UpstreamChart(
    name="nvidia-device-plugin", version="0.20.0", repository="https://nvidia.github.io/k8s-device-plugin"
)

UPSTREAM_CHARTS: tuple[UpstreamChart, ...] = (NVIDIA_DEVICE_PLUGIN,)

# The database bootstrap Job runs psql from the official image (client 17 speaks to servers 12-17).
POSTGRES_CLIENT_IMAGE = "docker.io/library/postgres:17.6-alpine3.22"
