"""Network and pod security: the platform's namespaces (PSA labels) and its NetworkPolicies.

Both come from `infra.specs.network_policies` (default-deny per namespace, one allow per data flow).
This component owns every namespace of the services (gateway, identity, inference, search, sandbox,
observability, `data` when Postgres or the object store runs in-cluster, and the CloudNativePG
operator's `cnpg-system` with in-cluster Postgres); the apps namespace is
the cluster component's (created first, PSA `restricted`). Other components deploy into
`Security.namespaces[...]` and depend on it, so a release never races its namespace. Decisions:
- Observability enforces PSA `privileged`: kube-prometheus-stack's node exporter and the DCGM exporter
  read host paths; it is not default-denied (see the specs module).
- Two flows the specs do not know, added as `Flow`s to the same list (`platform_flows`): the database
  bootstrap Job in the apps namespace reaches Postgres, and on S3 stacks media-api reaches the EKS Pod
  Identity agent (link-local, which the specs' internet allows exclude on purpose) for its credentials.
- What is in-cluster and what is external (RDS, S3, an upstream API) comes from the stack config, so
  prod's policies name the VPC CIDR for Postgres and public addresses for S3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from apps.gateway.routes import AppName
from infra.components.objects import k8s_object, object_name
from infra.config import DatabaseMode, ObjectStoreMode, StackConfig
from infra.specs.llama_cpp import LLAMA_CPP_PORT
from infra.specs.network_policies import (
    NAME_LABEL,
    PSA_VERSION,
    External,
    Flow,
    NetworkInputs,
    Workload,
    flows,
    namespace_manifests,
    network_policies,
)
from infra.specs.vllm import VLLM_PORT

OBSERVABILITY_NAMESPACE = "observability"
POD_IDENTITY_AGENT = "169.254.170.23/32"  # EKS Pod Identity agent, on every node
BOOTSTRAP_COMPONENT = "database"  # the bootstrap Job's `app.kubernetes.io/component` (infra.naming)
PUBLIC_HTTPS = External(cidrs=("0.0.0.0/0",), ports=(443,))


def network_inputs(config: StackConfig, apps_namespace: str) -> NetworkInputs:
    """Where every workload runs for this stack, as the policies see it."""
    defaults = NetworkInputs(apps_namespace=apps_namespace)
    postgres: Workload | External = defaults.postgres
    if config.database.mode is DatabaseMode.RDS:
        postgres = External(cidrs=(str(config.network.cidr),), ports=(5432,))
    object_store: Workload | External = defaults.object_store
    if config.object_store.mode is ObjectStoreMode.S3:
        object_store = PUBLIC_HTTPS
    port = VLLM_PORT if config.inference.accelerator == "gpu" else LLAMA_CPP_PORT
    return NetworkInputs(
        apps_namespace=apps_namespace,
        postgres=postgres,
        object_store=object_store,
        model_servers=defaults.model_servers.model_copy(update={"ports": (port,)}),
        sandbox=Workload(namespace="sandbox", labels={NAME_LABEL: "sandboxfusion"}, ports=(8080,)),
        llm_upstreams=PUBLIC_HTTPS if config.inference.external_upstream else None,
    )


@dataclass(frozen=True, kw_only=True)
class SecurityArgs:
    config: StackConfig
    apps_namespace: str


class Security(pulumi.ComponentResource):
    """Namespaces with Pod Security Admission labels, and every NetworkPolicy."""

    inputs: NetworkInputs
    namespaces: dict[str, k8s.core.v1.Namespace]
    flows: list[Flow]
    """Every flow the stack's policies allow (the services' and the platform's own)."""

    def __init__(self, name: str, args: SecurityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Security", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self)
        self.inputs = network_inputs(args.config, args.apps_namespace)
        self.namespaces = {}
        manifests: list[dict[str, Any]] = [
            manifest
            for manifest in namespace_manifests(self.inputs)
            if manifest["metadata"]["name"] != args.apps_namespace
        ]
        stores = (self.inputs.postgres, self.inputs.object_store)
        data = {store.namespace for store in stores if isinstance(store, Workload)}
        if isinstance(self.inputs.postgres, Workload):
            data.add(self.inputs.cnpg_operator.namespace)
        manifests += [_namespace(namespace, "baseline", "restricted") for namespace in sorted(data)]
        manifests.append(_namespace(OBSERVABILITY_NAMESPACE, "privileged", "baseline"))
        for manifest in manifests:
            namespace = manifest["metadata"]["name"]
            created = k8s_object(f"{name}-ns-{namespace}", manifest, on_cluster)
            assert isinstance(created, k8s.core.v1.Namespace)
            self.namespaces[namespace] = created
        in_namespaces = pulumi.ResourceOptions.merge(
            on_cluster, pulumi.ResourceOptions(depends_on=list(self.namespaces.values()))
        )
        self.flows = [*flows(self.inputs), *platform_flows(self.inputs, args.config)]
        for policy in network_policies(self.inputs, platform_flows(self.inputs, args.config)):
            k8s_object(f"{name}-{object_name(policy)}", policy, in_namespaces)
        self.register_outputs({"namespaces": sorted(self.namespaces)})


def platform_flows(inputs: NetworkInputs, config: StackConfig) -> list[Flow]:
    """The flows of what this program runs beside the services (the bootstrap Job, Pod Identity)."""
    job = Workload(
        namespace=inputs.apps_namespace,
        labels={"app.kubernetes.io/component": BOOTSTRAP_COMPONENT},
        ports=(),
    )
    found = [
        Flow(
            name="db-bootstrap-to-postgres",
            source=job,
            destination=inputs.postgres,
            why="the bootstrap Job creates the apps' roles and databases",
        )
    ]
    if config.object_store.mode is ObjectStoreMode.S3:
        found.append(
            Flow(
                name="media-api-to-pod-identity",
                source=inputs.app(AppName.MEDIA_API),
                destination=External(cidrs=(POD_IDENTITY_AGENT,), ports=(80,)),
                why="media-api's S3 credentials from the node's Pod Identity agent (link-local)",
            )
        )
    return found


def _namespace(name: str, enforce: str, warn: str) -> dict[str, Any]:
    levels = {"enforce": enforce, "warn": warn, "audit": warn}
    labels = {f"pod-security.kubernetes.io/{mode}": level for mode, level in levels.items()}
    labels |= {f"pod-security.kubernetes.io/{mode}-version": PSA_VERSION for mode in levels}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**labels, "app.kubernetes.io/part-of": "jan"}},
    }
