"""The release layer of the program: the apps' image, their releases, and the stack outputs.

`program.build()` calls `deploy()` once the data layer exists. Decisions:
- On AWS the program owns the image repository: an ECR repository with scan-on-push and immutable
  tags (a version tag, once pushed, always names the same image), so the stack's image is
  `<repositoryUrl>:<release.imageTag>`; elsewhere the stack names its repository.
- Public URLs follow the domain: the gateway answers on `api.<domain>`, Keycloak on `auth.<domain>`.
  Grafana is not public: its URL is a port-forward, like the gateway's in the dev stack.
- Admin credentials are never outputs: the outputs say which Secret holds them and the command that
  reads it. The generated secrets the program shares between components (Keycloak's backend client
  secret, the model servers' API key) are outputs only as Pulumi secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from apps.gateway.routes import AppName
from infra.components.apps import AppsArgs, JanApps
from infra.components.cluster import APPS_NAMESPACE
from infra.config import Environment, StackConfig
from infra.database import ADMIN_SECRET, DatabaseEndpoint
from infra.naming import Naming
from infra.object_storage import ObjectStoreEndpoint
from infra.specs import identity, otel, vllm
from infra.specs.network_policies import NAME_LABEL, NetworkInputs, Workload

# The ECR repository is `jan-<environment>-server`; the workflow pushes the version tag to each.
ECR_REPOSITORY = "server"
# Where the other components put their admin credentials (Secret, namespace, key).
KEYCLOAK_ADMIN = ("keycloak-admin", "identity", "password")
GRAFANA_ADMIN = ("grafana", "observability", "admin-password")
KONG_PROXY = ("gateway", "kong-kong-proxy", 80)
GRAFANA_SERVICE = ("observability", "grafana", 80)


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
    keycloak_backend_secret: pulumi.Output[str]
    model_server_api_key: pulumi.Output[str]


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
    keycloak_secret = random.RandomPassword(naming("keycloak-backend"), length=40, special=False)
    model_key = random.RandomPassword(naming("model-server-key"), length=40, special=False)
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
            model_server_api_key=model_key.result,
            keycloak_backend_secret=keycloak_secret.result,
            searxng_url=service_url(network.searxng),
            sandbox_fusion_url=service_url(network.sandbox),
            replicas=1 if config.environment is Environment.DEV else 2,
        ),
    )
    return Release(apps, repository, keycloak_secret.result, model_key.result)


def urls(config: StackConfig) -> dict[str, str]:
    kong_namespace, kong_service, kong_port = KONG_PROXY
    grafana_namespace, grafana_service, grafana_port = GRAFANA_SERVICE
    gateway = config.gateway_origin if config.on_aws else "http://localhost:8000"
    return {
        "gatewayUrl": gateway,
        "gatewayPortForward": f"kubectl -n {kong_namespace} port-forward svc/{kong_service} 8000:{kong_port}",
        "keycloakUrl": identity_inputs(config).public_url,
        "grafanaUrl": "http://localhost:3000",
        "grafanaPortForward": (
            f"kubectl -n {grafana_namespace} port-forward svc/{grafana_service} 3000:{grafana_port}"
        ),
    }


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
    pulumi.export("keycloakBackendClientSecret", pulumi.Output.secret(release.keycloak_backend_secret))
    pulumi.export("modelServerApiKey", pulumi.Output.secret(release.model_server_api_key))
