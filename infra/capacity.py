"""Capacity as config validation: do a stack's pools hold its pods, and do its models fit their GPUs?

`check()` runs in `infra.config.parse` after the schema, on `eks` stacks (an existing cluster's nodes
are not the program's), and returns one `key: problem` line per failure, each saying what to change.
Decisions:
- Instance and model figures come from `infra.instances`; a type or model not listed there is an
  error (add its published figures), never a guess.
- The system pool must hold, at its minimum size, every pod that runs there (`system_demand()`: the
  requests the components set, and for charts that set none a budget of what they use) plus the
  DaemonSets on each node (`NODE_DAEMONSETS`). A test ties this budget to the requests the render shows.
- A model fits its pool when every instance type of the pool has the GPUs it asks for, and its GPU
  memory at vLLM's `--gpu-memory-utilization` (0.9 unless `extraArgs` says otherwise) holds the
  weights, the KV cache of one full `maxContext` sequence (fp16/bf16 unless `--kv-cache-dtype=fp8*`)
  and `GPU_OVERHEAD_GIB` per GPU (CUDA context, activations, CUDA graphs).
- A model server's CPU and memory requests are its GPUs' share of the smallest instance type of its
  pool, after the kubelet's reservations and the GPU node's DaemonSets (`model_server_resources`); so
  the pod fits any node its pool may launch and uses what the node has. That share must hold vLLM's
  host memory (`HOST_MEMORY_GIB` plus the `/dev/shm` volume, which counts against the pod's memory).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.connections import app_scale
from infra.instances import INSTANCES, MODELS, InstanceFacts

if TYPE_CHECKING:
    from infra.config import StackConfig
    from infra.service_config import ModelConfig

GPU_OVERHEAD_GIB = 1.5
DEFAULT_GPU_UTILIZATION = 0.9
HOST_MEMORY_GIB = 6  # vLLM's processes and its CPU swap space (4 GiB per GPU by default)
# The DaemonSets on every node (vpc-cni with its network-policy agent, kube-proxy, the Pod Identity
# agent, the EBS CSI node plugin, node-exporter; on GPU nodes also the device plugin and DCGM exporter).
NODE_DAEMONSETS = (400, 768)  # millicpu, MiB


def shm_gib(gpus: int) -> int:
    """`/dev/shm` for a model server: tensor-parallel workers exchange activations through it."""
    return 1 if gpus == 1 else 4 * gpus


@dataclass(frozen=True, slots=True)
class Demand:
    millicpu: int
    memory_mib: int

    def __add__(self, other: Demand) -> Demand:
        return Demand(self.millicpu + other.millicpu, self.memory_mib + other.memory_mib)

    def times(self, count: int) -> Demand:
        return Demand(self.millicpu * count, self.memory_mib * count)


def system_demand(config: StackConfig) -> dict[str, Demand]:
    """What must run on the system pool of an `eks` stack, per component (all replicas)."""
    replicas = 1 if config.environment.value == "dev" else 2
    found = {
        "kong": Demand(250, 512).times(config.gateway.replicas),
        "keycloak": Demand(500, 1024).times(config.identity.replicas),
        # The releases' replicas (`infra.release` takes them from the same place), + a migration Job.
        "apps": Demand(250, 256).times(4 * app_scale(config)[0]) + Demand(100, 128),
        "otel-collector": Demand(200, 512).times(replicas),
        "jaeger": Demand(100, 512),
        # kube-prometheus-stack and Grafana set no requests: budgets of what they use.
        "prometheus": Demand(500, 2048),
        "prometheus-operator+kube-state-metrics+grafana": Demand(300, 512),
        "searxng+valkey": Demand(100, 256).times(2) + Demand(50, 64),
        "sandbox-fusion": Demand(500, 1024).times(2),
        "coredns": Demand(100, 70).times(2),
        "ebs-csi-controller": Demand(60, 240).times(2),
        "metrics-server": Demand(100, 200),
        "cluster-autoscaler": Demand(100, 300),
        "aws-load-balancer-controller": Demand(100, 128).times(2),
    }
    if config.inference.autoscaling.enabled:
        found["keda"] = Demand(300, 384)
    return found


def smallest(instance_types: Sequence[str]) -> InstanceFacts:
    """The instance type of a pool with the least for pods (every type must be in the table)."""
    return smallest_of([INSTANCES[name] for name in instance_types])


def smallest_of(candidates: Sequence[InstanceFacts]) -> InstanceFacts:
    """The least memory per GPU (then the fewest vCPUs): a pod sized for it fits every other type."""
    return min(candidates, key=lambda facts: (facts.allocatable_memory_mib / max(facts.gpus, 1), facts.vcpus))


def model_server_resources(gpus: int, facts: InstanceFacts) -> Demand:
    """A model server's requests: its GPUs' share of the node after reservations and DaemonSets."""
    daemon_cpu, daemon_mib = NODE_DAEMONSETS
    share = gpus / max(facts.gpus, 1)
    millicpu = math.floor((facts.allocatable_millicpu - daemon_cpu) * share / 100) * 100
    memory_mib = math.floor((facts.allocatable_memory_mib - daemon_mib) * share / 256) * 256
    return Demand(millicpu, memory_mib)


def _flag(args: Sequence[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
    return None


def gpu_fit(model: ModelConfig, facts: InstanceFacts) -> tuple[float, float]:
    """(GiB the model needs, GiB vLLM may use) on `model.gpus` GPUs of this instance type."""
    known = MODELS[model.model]
    utilization = float(_flag(model.extra_args, "--gpu-memory-utilization") or DEFAULT_GPU_UTILIZATION)
    kv_dtype = _flag(model.extra_args, "--kv-cache-dtype") or "auto"
    kv = known.kv_cache_gib(model.max_context, 1 if kv_dtype.startswith("fp8") else 2)
    need = known.weights_gib + kv + GPU_OVERHEAD_GIB * model.gpus
    return need, model.gpus * facts.gpu_memory_mib / 1024 * utilization


def check(config: StackConfig) -> list[str]:
    """One `key: problem (what to change)` line per capacity failure; empty when the stack fits."""
    if not config.on_aws:
        return []
    problems = _unknown_types(config)
    if problems:
        return problems
    problems += _system_pool(config)
    pools = {pool.name: pool for pool in config.gpu_pools}
    for index, model in enumerate(config.inference.models):
        pool = pools.get(model.pool)
        if pool is not None:
            problems += _model(
                f"inference.models[{index}]", model, pool.instance_types, pool.scaling.max_size
            )
    return problems


def _unknown_types(config: StackConfig) -> list[str]:
    problems = []
    pools = [("cluster.systemNodes.instanceTypes", config.cluster.system_nodes.instance_types)]
    pools += [
        (f"gpuPools[{i}].instanceTypes", pool.instance_types) for i, pool in enumerate(config.gpu_pools)
    ]
    for key, types in pools:
        for name in types:
            if name not in INSTANCES:
                problems.append(
                    f"{key}: no published figures for {name!r}; add them to infra/instances.py "
                    f"or use one of {', '.join(sorted(INSTANCES))}"
                )
    for index, model in enumerate(config.inference.models):
        if model.model not in MODELS:
            problems.append(
                f"inference.models[{index}].model: no facts for {model.model!r} (layers, KV heads, "
                "head size, weights); add them to infra/instances.py MODELS"
            )
    return problems


def _system_pool(config: StackConfig) -> list[str]:
    nodes = config.cluster.system_nodes
    facts = smallest(nodes.instance_types)
    daemon = Demand(*NODE_DAEMONSETS)
    per_node = Demand(facts.allocatable_millicpu, facts.allocatable_memory_mib) + daemon.times(-1)
    demand = sum(system_demand(config).values(), Demand(0, 0))
    cpu_nodes = math.ceil(demand.millicpu / per_node.millicpu)
    memory_nodes = math.ceil(demand.memory_mib / per_node.memory_mib)
    needed = max(cpu_nodes, memory_nodes)
    if needed <= nodes.scaling.min_size:
        return []
    have = per_node.times(nodes.scaling.min_size)
    return [
        f"cluster.systemNodes: {nodes.scaling.min_size} x {nodes.instance_types[0]} leave "
        f"{have.millicpu}m CPU and {have.memory_mib} MiB for pods, but the platform requests "
        f"{demand.millicpu}m CPU and {demand.memory_mib} MiB; raise scaling.minSize to {needed} "
        "or use a larger instance type"
    ]


def _model(key: str, model: ModelConfig, instance_types: Sequence[str], max_nodes: int) -> list[str]:
    problems = []
    for name in instance_types:
        facts = INSTANCES[name]
        if facts.gpus < model.gpus:
            problems.append(
                f"{key}.gpus: {model.model} asks for {model.gpus} GPUs but {name} in pool {model.pool!r} "
                f"has {facts.gpus}; lower gpus or use a larger instance type"
            )
            continue
        need, usable = gpu_fit(model, facts)
        if need > usable:
            known = MODELS[model.model]
            kv = need - known.weights_gib - GPU_OVERHEAD_GIB * model.gpus
            problems.append(
                f"{key}.maxContext: {model.model} needs {need:.1f} GiB of GPU memory on {name} "
                f"({known.weights_gib:.1f} GiB weights + {kv:.1f} GiB KV cache at {model.max_context} "
                f"tokens + {GPU_OVERHEAD_GIB * model.gpus:.1f} GiB overhead) but vLLM may use "
                f"{usable:.1f} GiB; lower maxContext, set --kv-cache-dtype=fp8, raise gpus or use a "
                "larger GPU"
            )
        host = model_server_resources(model.gpus, facts)
        host_need = (HOST_MEMORY_GIB + shm_gib(model.gpus)) * 1024
        if host.memory_mib < host_need:
            problems.append(
                f"{key}.pool: {name} leaves {host.memory_mib} MiB of memory for {model.model}, which "
                f"needs {host_need} MiB; use an instance type with more memory per GPU"
            )
    per_node = min(INSTANCES[name].gpus for name in instance_types) // model.gpus
    if per_node and model.replicas > per_node * max_nodes:
        problems.append(
            f"{key}.replicas: {model.replicas} replicas need more than pool {model.pool!r}'s "
            f"maxSize of {max_nodes} nodes; raise its maxSize"
        )
    return problems
