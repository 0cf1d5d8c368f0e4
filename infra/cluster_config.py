"""Stack config of the foundation: the Kubernetes cluster, its node groups, GPU pools and network.

Part of the stack config model (`infra.config.StackConfig` has one key per model here); kept apart so
each module stays readable. Same rules as there: unknown keys are errors, cross-field rules raise
`RuleError` with the key as `pulumi config set --path` spells it.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from infra.service_config import ConfigModel, RuleError, each_matches

SUPPORTED_KUBERNETES = ("1.31", "1.32", "1.33", "1.34", "1.35")


class ClusterMode(StrEnum):
    EKS = "eks"
    EXISTING = "existing"


class Scaling(ConfigModel):
    """Node counts of a managed node group; the autoscaler owns the desired size after creation."""

    min_size: int = Field(description="Fewest nodes.", ge=0, le=100)
    desired_size: int = Field(description="Nodes at creation (later changes are ignored).", ge=0, le=100)
    max_size: int = Field(description="Most nodes.", ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise RuleError("desiredSize", "must satisfy minSize <= desiredSize <= maxSize")
        return self


class SystemNodes(ConfigModel):
    """The node group for everything but model servers."""

    instance_types: list[str] = Field(["m7i.xlarge"], min_length=1, description="EC2 instance types.")
    scaling: Scaling = Field(Scaling(min_size=2, desired_size=2, max_size=5), description="Node counts.")
    disk_gib: int = Field(50, ge=20, le=2000, description="Root volume size in GiB.")


class ClusterConfig(ConfigModel):
    """Where the platform runs: a new EKS cluster, or an existing cluster from the kubeconfig."""

    mode: ClusterMode = Field(
        description="`eks` creates VPC, EKS and node groups; `existing` uses a cluster."
    )
    kubernetes_version: str = Field(
        description="Kubernetes minor version (`1.34`): the EKS version, and the schema version the "
        "offline render validates manifests against."
    )
    context: str | None = Field(None, description="`existing` only: the kubeconfig context to deploy to.")
    kubeconfig: str | None = Field(
        None, description="`existing` only: path to the kubeconfig (default: `~/.kube/config`)."
    )
    admin_arns: list[str] = Field(
        [], description="`eks` only: IAM principal ARNs given cluster-admin access entries."
    )
    public_access_cidrs: list[IPv4Network] = Field(
        [IPv4Network("0.0.0.0/0")], min_length=1, description="`eks` only: CIDRs allowed to reach the API."
    )
    system_nodes: SystemNodes = Field(SystemNodes(), description="`eks` only: the system node group.")

    @field_validator("kubernetes_version")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in SUPPORTED_KUBERNETES:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_KUBERNETES)}")
        return value

    @field_validator("admin_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        return each_matches(
            value, r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/-]+", "is not an IAM principal ARN"
        )

    @model_validator(mode="after")
    def _mode_fields(self) -> Self:
        set_fields = self.model_fields_set
        if self.mode is ClusterMode.EXISTING:
            if not self.context:
                raise RuleError("context", 'is required when cluster.mode is "existing"')
            for field in ("admin_arns", "public_access_cidrs", "system_nodes"):
                if field in set_fields:
                    raise RuleError(to_camel(field), 'applies only when cluster.mode is "eks"')
        else:
            for field in ("context", "kubeconfig"):
                if field in set_fields:
                    raise RuleError(field, 'applies only when cluster.mode is "existing"')
        return self


class GpuPool(ConfigModel):
    """One managed node group of NVIDIA GPU nodes, tainted `nvidia.com/gpu=true:NoSchedule`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,19}$", description="Pool name (node label `jan.ai/pool`).")
    instance_types: list[str] = Field(min_length=1, description="EC2 GPU instance types (`g6.2xlarge`).")
    ami: Literal["al2023", "bottlerocket"] = Field(
        "al2023",
        description="`al2023` (AL2023_x86_64_NVIDIA) or `bottlerocket` (BOTTLEROCKET_x86_64_NVIDIA).",
    )
    capacity: Literal["on-demand", "spot"] = Field("on-demand", description="`on-demand` or `spot`.")
    scaling: Scaling = Field(description="Node counts.")
    disk_gib: int = Field(200, ge=100, le=4000, description="Disk size in GiB (images and model weights).")
    labels: dict[str, str] = Field({}, description="Extra node labels.")


class NetworkConfig(ConfigModel):
    """The VPC of an `eks` cluster."""

    cidr: IPv4Network = Field(IPv4Network("10.0.0.0/16"), description="VPC CIDR (/16 to /20).")
    availability_zones: int = Field(3, ge=2, le=3, description="How many AZs the subnets span (2 or 3).")

    @field_validator("cidr")
    @classmethod
    def _size(cls, value: IPv4Network) -> IPv4Network:
        if not 16 <= value.prefixlen <= 20:
            raise ValueError("prefix length must be between /16 and /20")
        return value
