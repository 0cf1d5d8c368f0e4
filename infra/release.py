"""The release layer of the program: the apps' image, their releases, and the stack outputs.

`program.main()` calls `deploy()` once the data layer and the services exist. Decisions:
- On AWS the image comes from the stack's ECR repository, which a project of its own creates before
  the platform (`infra.registry`: the platform never pulls from a registry its own run creates); the
  program checks that `release.imageTag` is there before anything else, so the stack's image is
  `<repositoryUrl>:<release.imageTag>`; elsewhere the stack names its repository.
- Public URLs follow the domain: the gateway answers on `api.<domain>`, Keycloak on the identity URL
  the services use (`identity.publicUrl`, default `auth.<domain>`).
  Grafana is not public: its URL is a port-forward, like the gateway's in the dev stack.
- Admin credentials are never outputs: the outputs say which Secret holds them and the command that
  reads it (names as the identity and observability components create them). No output carries a
  secret value.
- Everything the apps take from the services comes from `Services`, the values those services were
  deployed with: the `IdentityInputs` (issuer, audience, JWKS URL), the collector, the SearXNG and
  SandboxFusion Services, llm-api's providers (`Inference.providers`: vLLM on GPU stacks, the CPU
  server in dev), and the Secrets the identity and inference components own, which the apps only
  reference (`SecretRef`): `keycloak-backend-client` and `Inference.api_key_secret`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from apps.gateway.routes import AppName
from infra import connections, registry
from infra.components import in_cluster_data
from infra.components.apps import MODEL_SERVER_KEY_ENV, AppsArgs, JanApps
from infra.components.cluster import APPS_NAMESPACE
from infra.components.identity import ADMIN_PASSWORD_KEY as KEYCLOAK_PASSWORD_KEY
from infra.components.identity import ADMIN_SECRET as KEYCLOAK_ADMIN_SECRET
from infra.components.identity import BACKEND_SECRET, BACKEND_SECRET_KEY
from infra.components.inference import API_KEY_KEY
from infra.components.observability import GRAFANA_ADMIN_SECRET, GRAFANA_PASSWORD_KEY
from infra.components.security import OBSERVABILITY_NAMESPACE
from infra.config import ObjectStoreMode, StackConfig
from infra.database import ADMIN_SECRET
from infra.foundation import Platform
from infra.naming import Naming
from infra.services import Services
from infra.specs import vllm
from infra.specs.network_policies import NAME_LABEL, NetworkInputs, Workload
from infra.specs.vllm import SecretRef

# Where the other components put their admin credentials (Secret, namespace, key).
KEYCLOAK_ADMIN = (KEYCLOAK_ADMIN_SECRET, NetworkInputs().keycloak.namespace, KEYCLOAK_PASSWORD_KEY)
GRAFANA_ADMIN = (GRAFANA_ADMIN_SECRET, OBSERVABILITY_NAMESPACE, GRAFANA_PASSWORD_KEY)
KONG_PROXY = ("gateway", "kong-kong-proxy", 80)
GRAFANA_SERVICE = ("observability", "grafana", 80)
GRAFANA_LOCAL_PORT = 3001


def image_repository(config: StackConfig, naming: Naming, opts: pulumi.InvokeOptions | None) -> str:
    """The apps' image repository: the stack's, or on AWS the registry project's once it holds the tag.

    The program calls this first, so a missing image stops `pulumi up` before anything is created.
    """
    if config.release.image_repository is not None:
        return config.release.image_repository
    return registry.require_image(config, naming, opts or pulumi.InvokeOptions())


def service_url(workload: Workload) -> str:
    return f"http://{workload.labels[NAME_LABEL]}.{workload.namespace}.svc.cluster.local:{workload.ports[0]}"


@dataclass(frozen=True, slots=True)
class Release:
    apps: JanApps
    image_repository: str


def deploy(*, platform: Platform, services: Services) -> Release:
    """The apps' releases on `platform` (which must have its data phase: `MissingPhase` otherwise)."""
    database, object_store = platform.data()
    config, naming, repository = platform.config, platform.naming, platform.image_repository
    providers = services.inference.providers
    uses_model_key = any(entry.api_key_env == MODEL_SERVER_KEY_ENV for entry in providers)
    replicas, max_replicas = connections.app_scale(config)
    apps = JanApps(
        naming("apps"),
        AppsArgs(
            naming=naming,
            namespace=platform.cluster.apps_namespace,
            environment=config.environment.value,
            image_repository=repository,
            image_tag=config.release.image_tag,
            database=database,
            object_store=object_store,
            identity=services.identity_inputs,
            observability=services.observability_inputs,
            providers_file=vllm.providers_file(providers),
            keycloak_backend_secret=SecretRef(name=BACKEND_SECRET, key=BACKEND_SECRET_KEY),
            model_server_api_key=(
                SecretRef(name=services.inference.api_key_secret, key=API_KEY_KEY) if uses_model_key else None
            ),
            searxng_url=service_url(services.network.searxng),
            sandbox_fusion_url=service_url(services.network.sandbox),
            replicas=replicas,
            max_replicas=max_replicas,
            # Sized so every pod the apps may run at once fits the server (`infra.connections`).
            database_pools=connections.budget(config).pools,
            # Exactly the Secrets the apps reference (the backend client's, the model-server key), never
            # the components: those include the model servers, whose readiness may take a cold start.
            depends_on=[*services.identity.app_secrets, *services.inference.app_secrets],
        ),
        platform.on_cluster(),
    )
    return Release(apps, repository)


def urls(config: StackConfig) -> dict[str, str]:
    """Where people reach the platform (dev: through port-forwards)."""
    kong_namespace, kong_service, kong_port = KONG_PROXY
    grafana_namespace, grafana_service, grafana_port = GRAFANA_SERVICE
    grafana_ports = f"{GRAFANA_LOCAL_PORT}:{grafana_port}"
    found = {
        "gatewayUrl": config.gateway_url,
        "gatewayPortForward": f"kubectl -n {kong_namespace} port-forward svc/{kong_service} 8000:{kong_port}",
        "keycloakUrl": config.identity_url,
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
    pulumi.export("appsImage", f"{release.image_repository}:{config.release.image_tag}")
    pulumi.export("appReleases", sorted(app.value for app in AppName))
