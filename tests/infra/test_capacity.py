"""Capacity as config validation (issue 19 items 10, 11; issue 13 item 15 and its scheduling invariant).

The stack files are checked against AWS's published instance figures (`infra.instances`): the system
pool must hold the platform at its minimum size, every model must fit its pool's GPUs (weights + KV
cache at `maxContext` + overhead) and its pods' requests must fit the pool's nodes after the kubelet's
reservations. The render then shows requests derived from the instance types, never a fixed size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import capacity
from infra.components.gpu_pools import GPU_TAINT_KEY, node_labels
from infra.config import ConfigError, StackConfig, load_stack_file, parse, stack_file, stack_values
from infra.instances import INSTANCES, MODELS
from tests.infra.conftest import STACKS, Rendered
from tests.infra.services_helpers import manifests

GIB = 1024


def _quantity(value: str) -> float:
    """CPU in millicores or memory in MiB."""
    units = {"m": 1, "Mi": 1, "Gi": 1024, "Ki": 1 / 1024}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value) * 1000  # whole cores


def _stack(stack: str, **changes: Any) -> dict[str, Any]:
    values = stack_values(stack_file(stack))
    for key, change in changes.items():
        values[f"jan-server:{key}"] = change
    return values


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_fit(stack: str) -> None:
    load_stack_file(stack_file(stack))


def test_a_system_pool_too_small_for_the_platform_is_refused() -> None:
    """Item 11: 2 x m7i.large (~3.9 vCPU allocatable) cannot hold staging's ~4.65 vCPU of requests."""
    cluster = yaml.safe_load(Path(stack_file("staging")).read_text())["config"]["jan-server:cluster"]
    cluster["systemNodes"] = {
        "instanceTypes": ["m7i.large"],
        "scaling": {"minSize": 2, "desiredSize": 2, "maxSize": 4},
    }
    with pytest.raises(ConfigError) as caught:
        parse(_stack("staging", cluster=cluster))
    message = str(caught.value)
    assert "jan-server:cluster.systemNodes" in message and "m7i.large" in message
    assert "raise scaling.minSize to" in message


def test_qwen3_8b_at_32k_does_not_fit_an_l4() -> None:
    """Item 10: 15.3 GiB of weights + 4.5 GiB of KV cache at 32,768 tokens exceed 0.9 of an L4."""
    models = yaml.safe_load(Path(stack_file("prod")).read_text())["config"]["jan-server:inference"]
    models["models"][0]["maxContext"] = 32768
    with pytest.raises(ConfigError) as caught:
        parse(_stack("prod", inference=models))
    message = str(caught.value)
    assert "jan-server:inference.models[0].maxContext: Qwen/Qwen3-8B" in message
    assert "4.5 GiB KV cache at 32768 tokens" in message and "g6.2xlarge" in message
    assert "lower maxContext" in message
    models["models"][0]["extraArgs"] = ["--kv-cache-dtype=fp8"]
    parse(_stack("prod", inference=models))  # an fp8 KV cache halves it


def test_kv_cache_per_token_matches_the_architecture() -> None:
    qwen = MODELS["Qwen/Qwen3-8B"]
    assert qwen.kv_cache_gib(1) * 2**30 == 36 * 8 * 128 * 2 * 2  # 144 KiB
    assert qwen.kv_cache_gib(32768) == pytest.approx(4.5)


def test_unknown_instance_types_and_models_say_what_to_add() -> None:
    pools = yaml.safe_load(Path(stack_file("prod")).read_text())["config"]["jan-server:gpuPools"]
    pools[0]["instanceTypes"] = ["x9.huge"]
    with pytest.raises(
        ConfigError, match=r"gpuPools\[0\]\.instanceTypes: no published figures for 'x9.huge'"
    ):
        parse(_stack("prod", gpuPools=pools))
    models = yaml.safe_load(Path(stack_file("prod")).read_text())["config"]["jan-server:inference"]
    models["models"][0]["model"] = "org/unknown-7b"
    with pytest.raises(ConfigError, match=r"models\[0\]\.model: no facts for 'org/unknown-7b'"):
        parse(_stack("prod", inference=models))


def test_a_model_needing_more_gpus_than_its_nodes_have_is_refused() -> None:
    models = yaml.safe_load(Path(stack_file("staging")).read_text())["config"]["jan-server:inference"]
    models["models"][0]["gpus"] = 2
    with pytest.raises(ConfigError, match=r"models\[0\]\.gpus: Qwen/Qwen3-8B asks for 2 GPUs but g6.xlarge"):
        parse(_stack("staging", inference=models))


def test_allocatable_follows_the_eks_reservations() -> None:
    large = INSTANCES["m7i.large"]
    assert large.max_pods == 29
    assert large.allocatable_millicpu == 2000 - 70
    assert large.allocatable_memory_mib == 8192 - (255 + 11 * 29) - 100
    assert INSTANCES["g6.12xlarge"].max_pods == 234


@pytest.mark.parametrize("stack", ("staging", "prod"))
def test_model_servers_request_what_their_pool_holds(rendered: dict[str, Rendered], stack: str) -> None:
    """13.15 and the invariant: requests fit every instance type of the pool after reservations."""
    config = load_stack_file(stack_file(stack))
    pools = {pool.name: pool for pool in config.gpu_pools}
    deployments = [
        d
        for d in manifests(rendered[stack], "inference", "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "model-server"
    ]
    assert len(deployments) == len(config.inference.models)
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        pool = pools[pod["nodeSelector"]["jan.ai/pool"]]
        assert all(pod["nodeSelector"][key] == value for key, value in pool.labels.items())
        assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
        (container,) = pod["containers"]
        requests = container["resources"]["requests"]
        gpus = int(requests["nvidia.com/gpu"])
        shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"]
        assert _quantity(shm) <= _quantity(requests["memory"])
        for name in pool.instance_types:
            node = INSTANCES[name]
            assert gpus <= node.gpus
            free_cpu = node.allocatable_millicpu - capacity.NODE_DAEMONSETS[0]
            free_memory = node.allocatable_memory_mib - capacity.NODE_DAEMONSETS[1]
            assert _quantity(requests["cpu"]) <= free_cpu * gpus / node.gpus, name
            assert _quantity(requests["memory"]) <= free_memory * gpus / node.gpus, name
        assert requests["memory"] == container["resources"]["limits"]["memory"]
        smallest = capacity.smallest(pool.instance_types)
        assert requests == {
            "cpu": f"{capacity.model_server_resources(gpus, smallest).millicpu}m",
            "memory": f"{capacity.model_server_resources(gpus, smallest).memory_mib}Mi",
            "nvidia.com/gpu": str(gpus),
        }


def _pod_requests(rendered: Rendered) -> float:
    """CPU requests the render shows on the system pool: our objects and upstream releases' values."""
    total = 0.0
    for record in rendered.resources:
        inputs = record["inputs"]
        kind = record["type"].rsplit(":", 1)[1]
        if kind in ("Deployment", "StatefulSet") and isinstance(inputs.get("spec"), dict):
            pod = inputs["spec"]["template"]["spec"]
            if "nvidia.com/gpu" in str(pod.get("tolerations")):
                continue
            replicas = inputs["spec"].get("replicas", 1)
            for container in pod["containers"]:
                cpu = (container.get("resources") or {}).get("requests", {}).get("cpu")
                total += _quantity(cpu) * replicas if cpu else 0
        elif kind == "Release" and inputs.get("repositoryOpts"):
            values = inputs.get("values") or {}
            if "nvidia.com/gpu.present" in str(values.get("nodeSelector")):
                continue
            cpu = ((values.get("resources") or {}).get("requests") or {}).get("cpu")
            total += _quantity(cpu) * values.get("replicaCount", 1) if cpu else 0
    return total


@pytest.mark.parametrize("stack", ("staging", "prod"))
def test_the_system_budget_covers_what_the_render_requests(rendered: dict[str, Rendered], stack: str) -> None:
    config = load_stack_file(stack_file(stack))
    budget = sum(capacity.system_demand(config).values(), capacity.Demand(0, 0))
    seen = _pod_requests(rendered[stack])
    assert seen > 0
    assert seen <= budget.millicpu, f"the render requests {seen}m; the budget says {budget.millicpu}m"


@dataclass(frozen=True)
class Pool:
    name: str
    labels: dict[str, str]
    taints: tuple[str, ...]
    instance_types: tuple[str, ...]
    can_have_nodes: bool


def _pools(config: StackConfig, autoscaler: bool) -> list[Pool]:
    arch = {"kubernetes.io/arch": "amd64"}  # every pool's AMI is x86_64
    nodes = config.cluster.system_nodes
    found = [
        Pool(
            "system",
            {"jan.ai/pool": "system", **arch},
            (),
            tuple(nodes.instance_types),
            nodes.scaling.min_size > 0,
        )
    ]
    for pool in config.gpu_pools:
        found.append(
            Pool(
                pool.name,
                {**node_labels(pool), **arch},
                (GPU_TAINT_KEY,),
                tuple(pool.instance_types),
                pool.scaling.min_size > 0 or (autoscaler and pool.scaling.max_size > 0),
            )
        )
    return found


def _placements(
    rendered: Rendered,
) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]], float, float, bool]]:
    """(name, node selector, tolerations, CPU m and memory MiB per pod, DaemonSet?) of every workload."""
    for record in rendered.resources:
        inputs = record["inputs"]
        kind = record["type"].rsplit(":", 1)[1]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") and isinstance(inputs.get("spec"), dict):
            pod = inputs["spec"]["template"]["spec"]
            requests = [(c.get("resources") or {}).get("requests") or {} for c in pod["containers"]]
            yield (
                f"{kind} {record['name']}",
                pod.get("nodeSelector") or {},
                pod.get("tolerations") or [],
                sum(_quantity(r["cpu"]) for r in requests if "cpu" in r),
                sum(_quantity(r["memory"]) for r in requests if "memory" in r),
                kind == "DaemonSet",
            )
        elif kind == "Release" and inputs.get("repositoryOpts"):
            values = inputs.get("values") or {}
            wanted: dict[str, str] = ((values.get("resources") or {}).get("requests")) or {}
            yield (
                f"release {record['name']}",
                values.get("nodeSelector") or {},
                values.get("tolerations") or [],
                _quantity(wanted["cpu"]) if "cpu" in wanted else 0,
                _quantity(wanted["memory"]) if "memory" in wanted else 0,
                "nvidia.com/gpu.present" in str(values.get("nodeSelector")),
            )


@pytest.mark.parametrize("stack", ("staging", "prod"))
def test_every_workload_lands_on_a_pool_that_can_hold_it(rendered: dict[str, Rendered], stack: str) -> None:
    """Issue 13's invariant: selector and tolerations match a pool that can have nodes, and one pod's
    requests fit each of its instance types after the kubelet's reservations and the DaemonSets."""
    config = load_stack_file(stack_file(stack))
    releases = rendered[stack].of_type("kubernetes:helm.sh/v3:Release")
    pools = _pools(config, autoscaler=any(r["name"] == "cluster-autoscaler" for r in releases))
    problems = []
    for name, selector, tolerations, cpu, memory, daemon in _placements(rendered[stack]):
        tolerated = {t.get("key") for t in tolerations if t.get("effect", "NoSchedule") == "NoSchedule"}
        fitting = [
            pool
            for pool in pools
            if all(pool.labels.get(key) == value for key, value in selector.items())
            and set(pool.taints) <= tolerated
        ]
        if not any(pool.can_have_nodes for pool in fitting):
            problems.append(f"{name}: no pool that can have nodes matches {selector}")
        reserve = (0, 0) if daemon else capacity.NODE_DAEMONSETS
        for pool in fitting:
            for type_ in pool.instance_types:
                node = INSTANCES[type_]
                if (
                    cpu > node.allocatable_millicpu - reserve[0]
                    or memory > node.allocatable_memory_mib - reserve[1]
                ):
                    problems.append(f"{name}: {cpu}m/{memory}Mi does not fit {type_} in pool {pool.name}")
    assert not problems, "\n".join(problems)
