"""Facts about EC2 instance types and models that sizing needs, and what a node leaves for pods.

Decisions:
- The table holds AWS's published figures as `ec2:DescribeInstanceTypes` reports them (vCPUs, memory in
  MiB, network interfaces and addresses per interface, which give the VPC CNI's max pods, GPUs and
  per-GPU memory in MiB). Config validation reads it (`infra.capacity`), so an instance type not listed
  is a validation error that says to add it here. At deploy time the program asks AWS instead
  (`aws.ec2.get_instance_type`, answered from this table under the mock engine), so a changed AWS figure
  cannot go stale here.
- What a node leaves for pods follows the EKS AL2023 bootstrap (nodeadm): kube-reserved memory of
  255 MiB + 11 MiB per pod the node may run, kube-reserved CPU of 6 % of the first core, 1 % of the
  second, 0.5 % of the third and fourth and 0.25 % of the rest, and a 100 MiB hard eviction threshold.
- `RDS_MEMORY_GIB` holds the memory AWS publishes per RDS instance class, from which RDS derives
  Postgres' `max_connections` (`infra.connections`).
- Model facts are what the KV cache and weights need: layers, KV heads and head size (from each
  model's `config.json`) and the weights' size in memory (its safetensors files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EVICTION_MIB = 100


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    vcpus: int
    memory_mib: int
    enis: int
    ips_per_eni: int
    gpus: int = 0
    gpu_memory_mib: int = 0
    """Per GPU."""

    @property
    def max_pods(self) -> int:
        """The VPC CNI's limit without prefix delegation: one address per ENI is the ENI's own."""
        return self.enis * (self.ips_per_eni - 1) + 2

    @property
    def allocatable_millicpu(self) -> int:
        return self.vcpus * 1000 - kube_reserved_millicpu(self.vcpus)

    @property
    def allocatable_memory_mib(self) -> int:
        return self.memory_mib - (255 + 11 * self.max_pods) - EVICTION_MIB


def kube_reserved_millicpu(vcpus: int) -> int:
    millicpu_per_core = [60, 10, 5, 5] + [2.5] * max(0, vcpus - 4)
    return round(sum(millicpu_per_core[:vcpus]))


_L4, _L40S, _A10G = 22888, 45776, 24576

INSTANCES: dict[str, InstanceFacts] = {
    "m7i.large": InstanceFacts(2, 8192, 3, 10),
    "m7i.xlarge": InstanceFacts(4, 16384, 4, 15),
    "m7i.2xlarge": InstanceFacts(8, 32768, 4, 15),
    "m7i.4xlarge": InstanceFacts(16, 65536, 8, 30),
    "m6i.large": InstanceFacts(2, 8192, 3, 10),
    "m6i.xlarge": InstanceFacts(4, 16384, 4, 15),
    "m6i.2xlarge": InstanceFacts(8, 32768, 4, 15),
    "g6.xlarge": InstanceFacts(4, 16384, 4, 15, 1, _L4),
    "g6.2xlarge": InstanceFacts(8, 32768, 4, 15, 1, _L4),
    "g6.4xlarge": InstanceFacts(16, 65536, 8, 30, 1, _L4),
    "g6.12xlarge": InstanceFacts(48, 196608, 8, 30, 4, _L4),
    "g6e.xlarge": InstanceFacts(4, 32768, 4, 15, 1, _L40S),
    "g6e.2xlarge": InstanceFacts(8, 65536, 4, 15, 1, _L40S),
    "g6e.4xlarge": InstanceFacts(16, 131072, 8, 30, 1, _L40S),
    "g6e.12xlarge": InstanceFacts(48, 393216, 8, 30, 4, _L40S),
    "g5.xlarge": InstanceFacts(4, 16384, 4, 15, 1, _A10G),
    "g5.2xlarge": InstanceFacts(8, 32768, 4, 15, 1, _A10G),
    "g5.12xlarge": InstanceFacts(48, 196608, 15, 50, 4, _A10G),
}


@dataclass(frozen=True, slots=True)
class ModelFacts:
    layers: int
    kv_heads: int
    head_dim: int
    weights_gib: float
    """The weights as loaded on the GPUs (bf16, or the quantised size)."""

    def kv_cache_gib(self, tokens: int, dtype_bytes: int = 2) -> float:
        per_token = self.layers * self.kv_heads * self.head_dim * 2 * dtype_bytes  # keys and values
        return per_token * tokens / 2**30


MODELS: dict[str, ModelFacts] = {
    "Qwen/Qwen3-8B": ModelFacts(layers=36, kv_heads=8, head_dim=128, weights_gib=15.26),
    "Qwen/Qwen3-14B": ModelFacts(layers=40, kv_heads=8, head_dim=128, weights_gib=27.51),
    "Qwen/Qwen3-32B-AWQ": ModelFacts(layers=64, kv_heads=8, head_dim=128, weights_gib=18.14),
    "Qwen/Qwen3-4B": ModelFacts(layers=36, kv_heads=8, head_dim=128, weights_gib=7.49),
    "meta-llama/Llama-3.1-8B-Instruct": ModelFacts(layers=32, kv_heads=8, head_dim=128, weights_gib=14.96),
}


def from_aws(result: Any) -> InstanceFacts:
    """Facts from `aws.ec2.get_instance_type` (what the program uses at deploy time)."""
    gpus = list(result.gpuses or [])
    return InstanceFacts(
        vcpus=int(result.default_vcpus),
        memory_mib=int(result.memory_size),
        enis=int(result.maximum_network_interfaces),
        ips_per_eni=int(result.maximum_ipv4_addresses_per_interface),
        gpus=sum(int(gpu.count) for gpu in gpus),
        gpu_memory_mib=min((int(gpu.memory_size) for gpu in gpus), default=0),
    )


def as_aws_answer(facts: InstanceFacts) -> dict[str, Any]:
    """The `getInstanceType` invoke's answer for these facts (the mock engine's)."""
    answer: dict[str, Any] = {
        "defaultVcpus": facts.vcpus,
        "memorySize": facts.memory_mib,
        "maximumNetworkInterfaces": facts.enis,
        "maximumIpv4AddressesPerInterface": facts.ips_per_eni,
        "gpuses": [],
    }
    if facts.gpus:
        answer["gpuses"] = [
            {"count": facts.gpus, "manufacturer": "NVIDIA", "memorySize": facts.gpu_memory_mib, "name": "gpu"}
        ]
    return answer


# RDS DB instance classes: memory in GiB as AWS's DB instance class table publishes it. RDS sets
# Postgres' `max_connections` from it (`infra.connections`); a class not listed is a validation error.
RDS_MEMORY_GIB: dict[str, int] = {
    "db.t4g.micro": 1,
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.t4g.xlarge": 16,
    "db.t4g.2xlarge": 32,
    "db.t3.micro": 1,
    "db.t3.small": 2,
    "db.t3.medium": 4,
    "db.t3.large": 8,
    "db.t3.xlarge": 16,
    "db.t3.2xlarge": 32,
    "db.m7g.large": 8,
    "db.m7g.xlarge": 16,
    "db.m7g.2xlarge": 32,
    "db.m7g.4xlarge": 64,
    "db.m6g.large": 8,
    "db.m6g.xlarge": 16,
    "db.m6g.2xlarge": 32,
    "db.m6g.4xlarge": 64,
    "db.m6i.large": 8,
    "db.m6i.xlarge": 16,
    "db.m6i.2xlarge": 32,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
    "db.r7g.2xlarge": 64,
    "db.r7g.4xlarge": 128,
    "db.r6g.large": 16,
    "db.r6g.xlarge": 32,
    "db.r6g.2xlarge": 64,
    "db.r6g.4xlarge": 128,
    "db.r6i.large": 16,
    "db.r6i.xlarge": 32,
    "db.r6i.2xlarge": 64,
}
