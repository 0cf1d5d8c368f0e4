"""Model servers: vLLM on the GPU pool (one Deployment + Service per `models` entry), and llm-api's
providers file pointing at the model servers (vLLM's, or the dev CPU server's from `infra.specs.llama_cpp`).

Decisions:
- One Deployment and one Service per model (`vllm-<model slug>`): a model scales, rolls and fails on
  its own, `job` in Prometheus names the model server, and llm-api registers each Service as one
  provider (its model sync reads `/v1/models`). `vllm serve` is the command (not the image's
  entrypoint, which moved between releases); the model is positional, `--tensor-parallel-size` is the
  GPU count, `--max-model-len` the context, tool calling is on (`--enable-auto-tool-choice
  --tool-call-parser hermes`), and `--api-key` comes from a Secret through `$(VLLM_API_KEY)`
  expansion. `extra_args` may not re-set any managed flag.
- Scheduling: the pool's node selector, the toleration `nvidia.com/gpu=true:NoSchedule`, and
  `nvidia.com/gpu` requests = limits. No `runtimeClassName`: EKS NVIDIA AMIs make the NVIDIA runtime
  the default.
- Probes: vLLM listens only once the engine is loaded, so `/health` is truthful; the startup probe's
  budget grows with the weights (`STARTUP_BASE_SECONDS` + `STARTUP_SECONDS_PER_GIB` per GiB, checked
  every 10 s), so a cold download is not killed, and liveness starts only after it. Pulumi's wait for
  the Deployment allows a whole cold start (`cold_start_seconds`: a new node, the image, the probe).
- Requests: CPU and memory are the model's GPUs' share of its pool's smallest instance type after
  the kubelet's reservations (`infra.capacity.model_server_resources`), never a fixed size; memory
  limit = request, and the `/dev/shm` volume (1 GiB for one GPU, 4 GiB per GPU with tensor
  parallelism) counts against it.
- Weights: a PersistentVolumeClaim per model mounted as `HF_HOME`, so restarts do not download again
  (`ReadWriteMany`, e.g. EFS, is required for more than one replica), or an `emptyDir` when the stack
  prefers no volume. `/dev/shm` is a memory `emptyDir` (tensor-parallel workers share memory).
- Rollout: `maxSurge 1, maxUnavailable 0`, so a model never drops to zero ready replicas; it needs
  one spare GPU node (the cluster autoscaler adds it).
- vLLM's image runs as root, so the inference namespace enforces PSA `baseline`; the container still
  drops all capabilities, forbids privilege escalation and uses the RuntimeDefault seccomp profile.
- The dev CPU server (llama.cpp) is `infra.specs.llama_cpp`; it shares the labels, Secret env and
  Service shapes defined here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from infra.capacity import model_server_resources, shm_gib
from infra.instances import InstanceFacts
from infra.versions import IMAGES

VLLM_PORT = 8000
STARTUP_BASE_SECONDS = 300
STARTUP_SECONDS_PER_GIB = 30
# A cold start on an empty pool: the autoscaler launches a GPU node and it joins (~5 min), the
# ~10 GB vLLM image is pulled (~10 min), then the startup probe's budget runs.
NODE_PROVISION_SECONDS = 300
IMAGE_PULL_SECONDS = 600
MANAGED_FLAGS = (
    "--api-key",
    "--port",
    "--host",
    "--model",
    "--served-model-name",
    "--tensor-parallel-size",
    "--max-model-len",
    "--download-dir",
)
GPU_RESOURCE = "nvidia.com/gpu"
# Paths inside the containers (their own emptyDir volumes), not on this machine.
SHM_PATH = "/dev/shm"  # noqa: S108
TMP_PATH = "/tmp"  # noqa: S108


class SecretRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    key: str


class GpuPool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node_selector: Mapping[str, str] = Field(default_factory=lambda: {"jan.ai/pool": "gpu"})
    taint_key: str = GPU_RESOURCE
    taint_value: str = "true"
    node: InstanceFacts
    """The pool's smallest instance type: a model's CPU and memory requests are its GPUs' share."""


class ModelServing(BaseModel):
    """One entry of the stack's `models` list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")  # a Hugging Face repository id
    served_name: str | None = None
    gpus: int = Field(1, ge=1, le=8)
    max_context: int = Field(8192, ge=512)
    replicas: int = Field(1, ge=0)
    extra_args: tuple[str, ...] = ()
    weights_gib: float = Field(16, gt=0)

    @property
    def name(self) -> str:
        return self.served_name or self.model

    @property
    def service_name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.model.split("/", 1)[1].lower()).strip("-")
        return f"vllm-{slug}"[:63].rstrip("-")


class InferenceInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "inference"
    api_key: SecretRef = SecretRef(name="model-server-api-key", key="api-key")
    hf_token: SecretRef | None = SecretRef(name="hf-token", key="token")
    weights_storage: Literal["pvc", "ephemeral"] = "pvc"
    storage_class: str | None = None
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"


def startup_failure_threshold(model: ModelServing) -> int:
    budget = STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * model.weights_gib
    return math.ceil(budget / 10)


def cold_start_seconds(model: ModelServing) -> int:
    """How long a first rollout may take: a new GPU node, the vLLM image, then the startup probe."""
    return NODE_PROVISION_SECONDS + IMAGE_PULL_SECONDS + startup_failure_threshold(model) * 10


def vllm_args(model: ModelServing) -> list[str]:
    for arg in model.extra_args:
        if arg.split("=", 1)[0] in MANAGED_FLAGS:
            raise ValueError(f"extra_args of {model.model} may not set {arg.split('=', 1)[0]}")
    return [
        model.model,
        f"--served-model-name={model.name}",
        "--host=0.0.0.0",
        f"--port={VLLM_PORT}",
        f"--tensor-parallel-size={model.gpus}",
        f"--max-model-len={model.max_context}",
        "--api-key=$(VLLM_API_KEY)",
        "--enable-auto-tool-choice",
        "--tool-call-parser=hermes",
        *model.extra_args,
    ]


def server_labels(instance: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "jan",
    }


def secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def vllm_manifests(model: ModelServing, pool: GpuPool, inputs: InferenceInputs) -> list[dict[str, Any]]:
    """Deployment, Service (and the weights PVC) serving one model with vLLM on the GPU pool."""
    if model.replicas > 1 and inputs.weights_storage == "pvc" and inputs.access_mode != "ReadWriteMany":
        raise ValueError(f"{model.model}: {model.replicas} replicas need a ReadWriteMany weights volume")
    name = model.service_name
    labels = server_labels(name, "vllm")
    env = [secret_env("VLLM_API_KEY", inputs.api_key), {"name": "HF_HOME", "value": "/models"}]
    if inputs.hf_token is not None:
        env.append(secret_env("HF_TOKEN", inputs.hf_token))
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    gpus = {GPU_RESOURCE: str(model.gpus)}
    share = model_server_resources(model.gpus, pool.node)
    cpu, memory = f"{share.millicpu}m", f"{share.memory_mib}Mi"
    container = {
        "name": "vllm",
        "image": IMAGES["vllm"].ref,
        "imagePullPolicy": "IfNotPresent",
        "command": ["vllm", "serve"],
        "args": vllm_args(model),
        "env": env,
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, **gpus},
            "limits": {"memory": memory, **gpus},
        },
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": startup_failure_threshold(model)},
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 3},
        "volumeMounts": [
            {"name": "weights", "mountPath": "/models"},
            {"name": "shm", "mountPath": SHM_PATH},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    weights: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": f"{name}-weights"}}
        if inputs.weights_storage == "pvc"
        else {"emptyDir": {"sizeLimit": f"{math.ceil(model.weights_gib * 1.5)}Gi"}}
    )
    pod_spec = {
        "automountServiceAccountToken": False,
        "nodeSelector": dict(pool.node_selector),
        "tolerations": [
            {"key": pool.taint_key, "operator": "Equal", "value": pool.taint_value, "effect": "NoSchedule"}
        ],
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [
            {"name": "weights", **weights},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_gib(model.gpus)}Gi"}},
        ],
    }
    manifests = [
        deployment_manifest(name, inputs.namespace, labels, model.replicas, pod_spec),
        service_manifest(name, inputs.namespace, labels, VLLM_PORT),
    ]
    if inputs.weights_storage == "pvc":
        manifests.append(_weights_claim(name, model, inputs, labels))
    return manifests


def deployment_manifest(
    name: str, namespace: str, labels: Mapping[str, str], replicas: int, pod_spec: dict[str, Any]
) -> dict[str, Any]:
    selector = {key: labels[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def service_manifest(name: str, namespace: str, labels: Mapping[str, str], port: int) -> dict[str, Any]:
    selector = {key: labels[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _weights_claim(
    name: str, model: ModelServing, inputs: InferenceInputs, labels: Mapping[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [inputs.access_mode],
        "resources": {"requests": {"storage": f"{math.ceil(model.weights_gib * 1.5)}Gi"}},
    }
    if inputs.storage_class:
        spec["storageClassName"] = inputs.storage_class
    metadata = {"name": f"{name}-weights", "namespace": inputs.namespace, "labels": dict(labels)}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata, "spec": spec}


def model_server_monitor(namespace: str) -> dict[str, Any]:
    """ServiceMonitor for every vLLM server's /metrics (`job` = the Service = the model).

    The dev llama.cpp server is left out: with an API key set, its /metrics needs the key.
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "model-servers",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "jan"},
        },
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm"}},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


class ProviderEntry(BaseModel):
    """One provider of llm-api's providers file; the key is read from `api_key_env` at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    vendor: str
    base_url: str
    api_key_env: str | None = "MODEL_SERVER_API_KEY"
    description: str = ""


def vllm_provider(model: ModelServing, inputs: InferenceInputs) -> ProviderEntry:
    url = f"http://{model.service_name}.{inputs.namespace}.svc.cluster.local:{VLLM_PORT}/v1"
    return ProviderEntry(name=f"vLLM {model.name}", vendor="vllm", base_url=url, description=model.model)


def providers_file(entries: Sequence[ProviderEntry]) -> str:
    """llm-api's providers file, in the format its loader reads (`apps/llm_api/providers/config.py`:
    `providers: [{name, kind, base_url, api_key, active}]`, unknown keys refused, `${ENV}` expanded
    from llm-api's environment; llm-api lists each provider's models from its `/models`)."""
    if not entries:
        raise ValueError("llm-api needs at least one provider")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"provider names must be unique: {names}")
    rendered = [
        {
            "name": entry.name,
            "kind": entry.vendor,
            "base_url": entry.base_url,
            "api_key": f"${{{entry.api_key_env}}}" if entry.api_key_env else "none",
            "active": True,
        }
        for entry in entries
    ]
    return yaml.safe_dump({"providers": rendered}, sort_keys=False)
