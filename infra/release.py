"""The release layer of the program: the apps' image, their releases, and the stack outputs.

`program.build()` calls `deploy()` once the data layer exists. Decisions:
- On AWS the program owns the image repository: an ECR repository with scan-on-push and immutable
  tags (a version tag, once pushed, always names the same image), so the stack's image is
  `<repositoryUrl>:<release.imageTag>`; elsewhere the stack names its repository.
- Public URLs follow the domain: the gateway answers on `api.<domain>`, Keycloak on `auth.<domain>`.
  Grafana is not public: its URL is a port-forward, like the gateway's in the dev stack.
- Admin credentials are never outputs: the outputs say which Secret holds them and the command that
  reads it (names as the identity and observability components create them). No output carries a
  secret value.
- Keycloak's backend client secret and the model servers' API key are owned by the identity and
  inference components; the apps only reference their Secrets (`SecretRef`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from apps.gateway.routes import AppName
from infra.components import in_cluster_data
from infra.components.apps import AppsArgs, JanApps
from infra.components.cluster import APPS_NAMESPACE
from infra.config import Environment, ObjectStoreMode, StackConfig
from infra.database import ADMIN_SECRET, DatabaseEndpoint
from infra.naming import Naming
from infra.object_storage import ObjectStoreEndpoint
from infra.specs import identity, otel, vllm
from infra.specs.network_policies import NAME_LABEL, NetworkInputs, Workload
from infra.specs.vllm import SecretRef

# The ECR repository is `jan-<environment>-server`; the workflow pushes the version tag to each.
ECR_REPOSITORY = "server"
# Where the other components put their admin credentials (Secret, namespace, key).
KEYCLOAK_ADMIN = ("keycloak-admin", "identity", "password")
GRAFANA_ADMIN = ("grafana-admin", "observability", "admin-password")
KONG_PROXY = ("gateway", "kong-kong-proxy", 80)
GRAFANA_SERVICE = ("observability", "grafana", 80)
GRAFANA_LOCAL_PORT = 3001


def identity_inputs(config: StackConfig) -> identity.IdentityInputs:
    return identity.IdentityInputs(public_url=f"https://auth.{config.domain}")


def image_repository(
    config: StackConfig, naming: Naming, opts: pulumi.ResourceOptions | None
) -> pulumi.Output[str]:
    """The apps' image repository: the stack's, or on AWS an ECR repository created here."""
    if config.release.image_repository is not None:
        return pulumi.Output.from_input(config.release.image_repository)
    repository = aws.ecr.Repository(
        naming("images"),
        name=naming(ECR_REPOSITORY),
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
        encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")],
        force_delete=config.environment is not Environment.PROD,
        tags=naming.tags("images"),
        opts=opts,
    )
    return repository.repository_url


def service_url(workload: Workload) -> str:
    return f"http://{workload.labels[NAME_LABEL]}.{workload.namespace}.svc.cluster.local:{workload.ports[0]}"


def model_providers(config: StackConfig) -> list[vllm.ProviderEntry]:
    """What llm-api routes to. GPU stacks get their vLLM entries from the inference component."""
    if config.inference.accelerator == "cpu":
        return [vllm.llama_cpp_provider(vllm.CpuModelInputs())]
    return []


@dataclass(frozen=True, slots=True)
class Release:
    apps: JanApps
    image_repository: pulumi.Output[str]


def deploy(
    config: StackConfig,
    naming: Naming,
    provider: k8s.Provider,
    namespace: pulumi.Output[str],
    database: DatabaseEndpoint,
    object_store: ObjectStoreEndpoint,
    aws_opts: pulumi.ResourceOptions | None = None,
) -> Release:
    repository = image_repository(config, naming, aws_opts)
    shared = stand_in_secrets(naming, provider, namespace)
    network = NetworkInputs()
    providers = model_providers(config)
    apps = JanApps(
        naming("apps"),
        AppsArgs(
            naming=naming,
            provider=provider,
            namespace=namespace,
            environment=config.environment.value,
            image_repository=repository,
            image_tag=config.release.image_tag,
            database=database,
            object_store=object_store,
            identity=identity_inputs(config),
            observability=otel.ObservabilityInputs(),
            providers_file=vllm.providers_file(providers) if providers else None,
            keycloak_backend_secret=KEYCLOAK_BACKEND,
            model_server_api_key=MODEL_SERVER_KEY,
            searxng_url=service_url(network.searxng),
            sandbox_fusion_url=service_url(network.sandbox),
            replicas=1 if config.environment is Environment.DEV else 2,
            max_replicas=None if config.environment is Environment.DEV else 10,
            depends_on=list(shared.values()),
        ),
    )
    return Release(apps, repository)


KEYCLOAK_BACKEND = SecretRef(name="keycloak-backend-client", key="client-secret")
MODEL_SERVER_KEY = SecretRef(name="model-server-api-key", key="api-key")


def stand_in_secrets(
    naming: Naming, provider: k8s.Provider, namespace: pulumi.Output[str]
) -> dict[SecretRef, k8s.core.v1.Secret]:
    """TODO(merge with platform-services): the Identity and Inference components create these two
    Secrets in the apps namespace under the same names; once they are in the program, pass theirs and
    delete this function (the render refuses two objects with one name, so a leftover is caught).
    """
    secrets = {}
    for ref, label in ((KEYCLOAK_BACKEND, "keycloak-backend"), (MODEL_SERVER_KEY, "model-server-key")):
        value = random.RandomPassword(naming(label), length=40, special=False)
        secrets[ref] = k8s.core.v1.Secret(
            naming(label),
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ref.name, namespace=namespace, labels=naming.labels("apps")
            ),
            string_data={ref.key: value.result},
            opts=pulumi.ResourceOptions(provider=provider),
        )
    return secrets


def urls(config: StackConfig) -> dict[str, str]:
    """Where people reach the platform (dev: through port-forwards)."""
    kong_namespace, kong_service, kong_port = KONG_PROXY
    grafana_namespace, grafana_service, grafana_port = GRAFANA_SERVICE
    grafana_ports = f"{GRAFANA_LOCAL_PORT}:{grafana_port}"
    gateway = config.gateway_origin if config.on_aws else "http://localhost:8000"
    found = {
        "gatewayUrl": gateway,
        "gatewayPortForward": f"kubectl -n {kong_namespace} port-forward svc/{kong_service} 8000:{kong_port}",
        "keycloakUrl": identity_inputs(config).public_url,
        "grafanaUrl": f"http://localhost:{GRAFANA_LOCAL_PORT}",
        "grafanaPortForward": (
            f"kubectl -n {grafana_namespace} port-forward svc/{grafana_service} {grafana_ports}"
        ),
    }
    if config.object_store.mode is ObjectStoreMode.IN_CLUSTER:
        found["objectStorePortForward"] = in_cluster_data.port_forward()
    return found


def admin_credentials() -> dict[str, str]:
    """How to read each admin credential: a command, never the value."""
    entries = {
        "keycloak": KEYCLOAK_ADMIN,
        "grafana": GRAFANA_ADMIN,
        "database": (ADMIN_SECRET, APPS_NAMESPACE, "PGPASSWORD"),
    }
    return {
        name: f"kubectl -n {namespace} get secret {secret} -o jsonpath='{{.data.{key}}}' | base64 -d"
        for name, (secret, namespace, key) in entries.items()
    }


def export(config: StackConfig, release: Release) -> None:
    for key, value in urls(config).items():
        pulumi.export(key, value)
    pulumi.export("adminCredentials", admin_credentials())
    pulumi.export("appsImage", pulumi.Output.concat(release.image_repository, ":", config.release.image_tag))
    pulumi.export("appReleases", sorted(app.value for app in AppName))
