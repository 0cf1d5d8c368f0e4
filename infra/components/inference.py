"""Inference: vLLM per configured model on its GPU pool, or the dev CPU server, and llm-api's providers.

Manifests come from `infra.specs.vllm` (one Deployment, Service and weights volume per model) and
`infra.specs.autoscaling` (a KEDA ScaledObject per model when `inference.autoscaling.enabled`).
Decisions:
- Scheduling follows the pool a model names: its node labels (`jan.ai/pool`) as node selector, and the
  pools' taint as toleration (`infra.components.gpu_pools`), so a model cannot land on another pool.
- One API key (pulumi-random) guards every model server; it is stored in the inference namespace for
  the servers and in the apps namespace for llm-api (`MODEL_SERVER_API_KEY`, which llm-api's
  providers file expands).
- llm-api's providers (`Inference.providers`: the vLLM Services, the llama.cpp server, or
  `inference.externalUpstream`, whose key Secret the stack provides) are handed to llm-api's release,
  which mounts them as its providers file (`infra.specs.vllm.providers_file`).
- Weights: a ReadWriteOnce volume per model when it runs one replica; a model that may run several
  (replicas > 1 or autoscaling) caches them in an `emptyDir` on the GPU node's disk instead (no RWX
  storage such as EFS is provisioned).
- A model's pods wait for their pool's node group, get CPU and memory sized from its instance type
  (`InferenceArgs.pool_nodes`, from AWS at deploy time) and a rollout timeout that covers a cold start
  (`infra.specs.vllm.cold_start_seconds`); the apps never wait for a model server to be ready.
- vLLM's dashboard and alert rules ship here, with the model servers (`infra.specs.monitoring`): the
  dev CPU server exports none of vLLM's metrics.
- Under KEDA, Pulumi leaves `spec.replicas` alone (`ignore_changes`), or each update would undo it;
  KEDA is installed by this component (pinned chart) only when a stack enables it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import helm
from infra.cluster_config import GpuPool
from infra.components.gpu_pools import GPU_TAINT_KEY, node_labels
from infra.components.objects import k8s_object, monitoring_objects, object_name
from infra.config import InferenceConfig
from infra.instances import InstanceFacts
from infra.specs.autoscaling import QueueScaling, vllm_scaled_object
from infra.specs.llama_cpp import CpuModelInputs, llama_cpp_manifests, llama_cpp_provider
from infra.specs.vllm import GpuPool as PoolScheduling
from infra.specs.vllm import (
    InferenceInputs,
    ModelServing,
    ProviderEntry,
    SecretRef,
    cold_start_seconds,
    model_server_monitor,
    vllm_manifests,
    vllm_provider,
)
from infra.versions import CHARTS

API_KEY_SECRET = "model-server-api-key"  # noqa: S105 - a Secret's name
API_KEY_KEY = "api-key"
KEDA_NAMESPACE = "keda"


@dataclass(frozen=True, kw_only=True)
class InferenceArgs:
    settings: InferenceConfig
    pools: list[GpuPool]
    namespace: str
    apps_namespace: str
    prometheus_url: str
    monitoring_namespace: str
    """Where vLLM's dashboard and alert rules go (Grafana's and Prometheus')."""
    depends_on: list[pulumi.Resource]
    # Per GPU pool: its smallest instance type and its node group (what a model's pods wait for).
    pool_nodes: Mapping[str, InstanceFacts] = field(default_factory=dict)
    node_groups: Mapping[str, pulumi.Resource] = field(default_factory=dict)


class Inference(pulumi.ComponentResource):
    """Model servers, their API key, optional KEDA scaling, and llm-api's providers file."""

    providers: list[ProviderEntry]
    api_key_secret: str
    app_secrets: list[pulumi.Resource]
    """What the apps read from here: the API-key Secret in their namespace (none for an upstream)."""

    def __init__(self, name: str, args: InferenceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Inference", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        inputs = InferenceInputs(
            namespace=args.namespace,
            api_key=SecretRef(name=API_KEY_SECRET, key=API_KEY_KEY),
            hf_token=SecretRef(name=args.settings.hf_token_secret, key="token")
            if args.settings.hf_token_secret
            else None,
        )
        upstream = args.settings.external_upstream
        # llm-api reads MODEL_SERVER_API_KEY from `api-key` of this Secret in the apps namespace.
        self.api_key_secret = upstream.api_key_secret if upstream else API_KEY_SECRET
        self.app_secrets = []
        if upstream is None:
            secrets = self._api_key(name, [args.namespace, args.apps_namespace], on_cluster)
            self.app_secrets = [secrets[args.apps_namespace]]
        if args.settings.accelerator == "gpu":
            self.providers = self._vllm(name, args, inputs, on_cluster)
        elif upstream is not None:
            self.providers = [
                ProviderEntry(name="External upstream", vendor="openai", base_url=upstream.base_url)
            ]
        else:
            cpu = CpuModelInputs(namespace=args.namespace, api_key=inputs.api_key)
            for manifest in llama_cpp_manifests(cpu):
                k8s_object(f"{name}-{object_name(manifest)}", manifest, on_cluster)
            self.providers = [llama_cpp_provider(cpu)]
        self.register_outputs({"providers": [entry.base_url for entry in self.providers]})

    def _api_key(
        self, name: str, namespaces: list[str], opts: pulumi.ResourceOptions
    ) -> dict[str, k8s.core.v1.Secret]:
        key = random.RandomPassword(
            f"{name}-api-key", length=40, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        secrets = {}
        for namespace in namespaces:
            secrets[namespace] = k8s.core.v1.Secret(
                f"{name}-api-key-{namespace}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=API_KEY_SECRET, namespace=namespace, labels={"app.kubernetes.io/part-of": "jan"}
                ),
                string_data=pulumi.Output.secret({API_KEY_KEY: key.result}),
                opts=opts,
            )
        return secrets

    def _vllm(
        self, name: str, args: InferenceArgs, inputs: InferenceInputs, on_cluster: pulumi.ResourceOptions
    ) -> list[ProviderEntry]:
        pools = {pool.name: pool for pool in args.pools}
        scaling = args.settings.autoscaling
        keda: list[pulumi.Resource] = []
        if scaling.enabled:
            on_keda = pulumi.ResourceOptions(parent=self)
            namespace = k8s.core.v1.Namespace(
                f"{name}-keda",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=KEDA_NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted"}
                ),
                opts=on_keda,
            )
            keda.append(
                helm.upstream_release(
                    "keda",
                    CHARTS["keda"],
                    namespace=KEDA_NAMESPACE,
                    values={"crds": {"install": True}},
                    opts=pulumi.ResourceOptions.merge(
                        on_keda, pulumi.ResourceOptions(depends_on=[namespace])
                    ),
                )
            )
        providers = []
        for entry in args.settings.models:
            model = ModelServing(
                model=entry.model,
                gpus=entry.gpus,
                max_context=entry.max_context,
                replicas=entry.replicas,
                extra_args=tuple(entry.extra_args),
                weights_gib=entry.weights_gib,
            )
            pool = PoolScheduling(
                node_selector=node_labels(pools[entry.pool]),
                taint_key=GPU_TAINT_KEY,
                node=args.pool_nodes[entry.pool],
            )
            cold_start = f"{cold_start_seconds(model)}s"
            replicas_owned = pulumi.ResourceOptions(
                ignore_changes=["spec.replicas"] if scaling.enabled else None,
                # Pulumi waits for the rollout: long enough for a new GPU node, the image and the weights.
                custom_timeouts=pulumi.CustomTimeouts(create=cold_start, update=cold_start),
            )
            on_pool = pulumi.ResourceOptions(depends_on=[args.node_groups[entry.pool]])
            # A ReadWriteOnce volume serves one replica; a model that can run several caches on node disk.
            several = entry.replicas > 1 or (scaling.enabled and scaling.max_replicas > 1)
            storage = inputs.model_copy(update={"weights_storage": "ephemeral" if several else "pvc"})
            for manifest in vllm_manifests(model, pool, storage):
                opts = replicas_owned if manifest["kind"] == "Deployment" else None
                k8s_object(
                    f"{name}-{object_name(manifest)}",
                    manifest,
                    pulumi.ResourceOptions.merge(pulumi.ResourceOptions.merge(on_cluster, on_pool), opts),
                )
            if scaling.enabled:
                queue = QueueScaling(
                    prometheus_url=args.prometheus_url,
                    min_replicas=scaling.min_replicas,
                    max_replicas=scaling.max_replicas,
                    waiting_per_replica=scaling.waiting_per_replica,
                )
                scaled = vllm_scaled_object(model, inputs, queue)
                k8s_object(
                    f"{name}-{object_name(scaled)}",
                    scaled,
                    pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=keda)),
                )
            providers.append(vllm_provider(model, inputs))
        monitor = model_server_monitor(args.namespace)
        k8s_object(f"{name}-{object_name(monitor)}", monitor, on_cluster)
        monitoring_objects(name, "vllm", args.monitoring_namespace, on_cluster)
        return providers
