"""The four apps as Helm releases of `charts/jan-app`, wired from one source of truth.

Every value an app reads comes from the component that owns it: the DSN Secret from the
`DatabaseEndpoint`, the bucket settings from the `ObjectStoreEndpoint`, `AUTH__*` and llm-api's
`KEYCLOAK__*` from `infra.specs.identity`, the collector from `infra.specs.otel`, the providers file
from `infra.specs.vllm`, and the other apps' URLs from the same naming Kong routes to
(`infra.specs.kong.app_url`). Decisions:
- Release = app name = Service name, so Kong's upstreams, the network policies and the apps agree.
  The chart's version is the repository's (`ChartSource.ours` reads Chart.yaml; a test ties it to
  pyproject) and the image tag is the stack's `release.imageTag`, validated as pinned by the config.
- Secrets never enter a release's values: the apps read them through `secretEnv` / `envFromSecrets`
  from Secrets this component (or the data components) creates from Pulumi secrets.
- `AUTH__INTERNAL_TOKEN` (the header the apps send llm-api's internal API-key endpoint) is one
  generated value shared by all four apps; llm-api's `MODEL_PROVIDER_SECRET` (the key material for
  stored provider keys) is generated too. Both are pulumi-random values, never in the values.
- The chart's own NetworkPolicy is off: the platform's policies (`infra.specs.network_policies`) own
  every flow, so there is one place that says who may talk to whom.
- Each app's database pool (`DB_POOL_SIZE`, `DB_MAX_OVERFLOW`) is the connection budget's
  (`infra.connections`), and `WEB_CONCURRENCY` is pinned to the processes per pod it counts, so every
  pod the HPA and a rollout may run at once fits the server's `max_connections`.
- Releases wait for the database bootstrap Job and the object store: the migration hook Job needs the
  app's database to exist.
- response-api's release waits for llm-api's and mcp-tools' (`CALLEES`): an app may start using a
  newer route of an app it calls (response-api's appends create its new conversations, `?create=true`),
  so on `pulumi up` the callee rolls out first and a new caller never meets an old callee. Only that
  direction is ordered: llm-api and media-api call each other (API-key checks, placeholder
  resolution), so they cannot both wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from apps.gateway.routes import AppName
from infra import connections, database, helm
from infra.helm import ChartSource
from infra.naming import Naming
from infra.object_storage import ObjectStoreEndpoint
from infra.specs import identity, kong, otel
from infra.specs.vllm import SecretRef

CHART = "jan-app"
INTERNAL_TOKEN_SECRET = "jan-internal-token"  # noqa: S105 - a Secret's name
# The key material llm-api encrypts stored provider API keys with (MODEL_PROVIDER_SECRET).
PROVIDER_KEYS_SECRET = "llm-api-provider-keys"  # noqa: S105 - a Secret's name
PROVIDERS_FILE = "providers.yml"
API_KEY_VALIDATION_PATH = "/internal/api-keys/validate"  # llm-api's internal route
MEDIA_RESOLVE_PATH = "/v1/media/resolve"  # media-api's placeholder resolution
FILES_DIR = "/etc/jan-server"
PROVIDERS_FILE_ENV = "PROVIDERS_FILE"  # LlmApiSettings.providers_file
MODEL_SERVER_KEY_ENV = "MODEL_SERVER_API_KEY"  # what `infra.specs.vllm.providers_file` expands


# The apps whose releases an app's release waits for: those it calls and may need a newer route of.
CALLEES: dict[AppName, tuple[AppName, ...]] = {
    AppName.RESPONSE_API: (AppName.LLM_API, AppName.MCP_TOOLS),
}


@dataclass(frozen=True, kw_only=True)
class AppsArgs:
    naming: Naming
    # The apps namespace as the Cluster component created it (so everything here waits for it).
    namespace: pulumi.Output[str]
    environment: str
    image_repository: pulumi.Input[str]
    image_tag: str
    database: database.DatabaseEndpoint
    object_store: ObjectStoreEndpoint
    identity: identity.IdentityInputs
    observability: otel.ObservabilityInputs
    # llm-api's providers file (`infra.specs.vllm.providers_file` of the inference component's providers).
    providers_file: str | None
    # Secrets in the apps namespace that the identity and inference components own; the model-server
    # key only when the providers file references MODEL_SERVER_KEY_ENV.
    keycloak_backend_secret: SecretRef
    model_server_api_key: SecretRef | None
    searxng_url: str
    sandbox_fusion_url: str
    replicas: int = 2
    # The most replicas the HPA may scale each app to; None: a fixed `replicas`.
    max_replicas: int | None = None
    # Each app process's database pool (`infra.connections.budget`); an app not listed keeps its own.
    database_pools: Mapping[AppName, connections.Pool] = field(default_factory=dict)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class JanApps(pulumi.ComponentResource):
    """The four app releases and the internal token they share."""

    releases: dict[AppName, k8s.helm.v3.Release]

    def __init__(self, name: str, args: AppsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:JanApps", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self)
        secrets = [
            self._generated(f"{name}-{secret}", secret, key, args)
            for secret, key in ((INTERNAL_TOKEN_SECRET, "token"), (PROVIDER_KEYS_SECRET, "secret"))
        ]
        ready = [args.database.ready, *secrets, *args.depends_on]
        if args.object_store.ready is not None:
            ready.append(args.object_store.ready)
        source = ChartSource.ours(CHART)
        self.releases = {}
        for app in sorted(AppName, key=lambda app: app in CALLEES):  # callees first
            callees = [self.releases[callee] for callee in CALLEES.get(app, ())]
            self.releases[app] = helm.release(
                app.value,
                source,
                namespace=args.namespace,
                values=release_values(app, args),
                opts=pulumi.ResourceOptions.merge(
                    on_cluster, pulumi.ResourceOptions(depends_on=[*ready, *callees])
                ),
            )
        self.register_outputs({"releases": [app.value for app in self.releases]})

    def _generated(self, name: str, secret_name: str, key: str, args: AppsArgs) -> k8s.core.v1.Secret:
        """A Secret holding one generated value (pulumi-random, so it stays a Pulumi secret)."""
        value = random.RandomPassword(
            name, length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        return k8s.core.v1.Secret(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=secret_name, namespace=args.namespace, labels=args.naming.labels("apps")
            ),
            string_data={key: value.result},
            opts=pulumi.ResourceOptions(parent=self),
        )


def app_url(app: AppName, namespace: pulumi.Output[str], path: str = "") -> pulumi.Output[str]:
    """The in-cluster URL of an app: the same Service Kong routes to."""
    return namespace.apply(lambda name: kong.app_url(app, kong.KongInputs(namespace=name)) + path)


def release_values(app: AppName, args: AppsArgs) -> dict[str, Any]:
    env, secret_env, env_from, extra = _wiring(app, args)
    values: dict[str, Any] = {
        "app": app.value,
        "image": {"repository": args.image_repository, "tag": args.image_tag},
        "replicaCount": args.replicas,
        "env": env,
        "secretEnv": {
            "DATABASE_URL": {"secretName": args.database.dsn_secrets[app.value], "key": database.DSN_KEY},
            "AUTH__INTERNAL_TOKEN": {"secretName": INTERNAL_TOKEN_SECRET, "key": "token"},
            **secret_env,
        },
        "envFromSecrets": env_from,
        "networkPolicy": {"enabled": False},
        "podDisruptionBudget": {"enabled": args.replicas > 1},
    }
    if args.max_replicas is not None:
        values["autoscaling"] = {
            "enabled": True,
            "minReplicas": args.replicas,
            "maxReplicas": args.max_replicas,
        }
    return values | extra


def _common_env(app: AppName, args: AppsArgs) -> dict[str, Any]:
    pool = args.database_pools.get(app)
    return {
        "ENVIRONMENT": args.environment,
        "LOG_FORMAT": "json",
        # The connection budget counts this many processes per pod.
        "WEB_CONCURRENCY": str(connections.WORKERS_PER_POD),
        **(pool.env() if pool is not None else {}),
        **identity.app_auth_env(args.identity),
        "AUTH__API_KEY_VALIDATION_URL": app_url(AppName.LLM_API, args.namespace, API_KEY_VALIDATION_PATH),
        **otel.app_otel_env(args.observability),
        "OTEL_SERVICE_NAME": app.value,
    }


def _ref(secret: SecretRef) -> dict[str, str]:
    return {"secretName": secret.name, "key": secret.key}


_Wiring = tuple[dict[str, Any], dict[str, Any], list[str], dict[str, Any]]


def _wiring(app: AppName, args: AppsArgs) -> _Wiring:
    """(plain env, secretEnv, envFromSecrets, other values) of one app."""
    env = _common_env(app, args)
    if app is AppName.LLM_API:
        secrets = {
            identity.BACKEND_SECRET_ENV: _ref(args.keycloak_backend_secret),
            "MODEL_PROVIDER_SECRET": {"secretName": PROVIDER_KEYS_SECRET, "key": "secret"},
        }
        if args.model_server_api_key is not None:
            secrets[MODEL_SERVER_KEY_ENV] = _ref(args.model_server_api_key)
        env |= identity.llm_api_keycloak_env(args.identity)
        env["MEDIA_RESOLVE_URL"] = app_url(AppName.MEDIA_API, args.namespace, MEDIA_RESOLVE_PATH)
        if args.providers_file is None:
            return env, secrets, [], {}
        files = {"files": {PROVIDERS_FILE: args.providers_file}, "filesMountPath": FILES_DIR}
        return env | {PROVIDERS_FILE_ENV: f"{FILES_DIR}/{PROVIDERS_FILE}"}, secrets, [], files
    if app is AppName.RESPONSE_API:
        urls = {
            "LLM_API_URL": app_url(AppName.LLM_API, args.namespace),
            # response-api appends /v1/mcp and /v1/chat/completions itself.
            "MCP_TOOLS_URL": app_url(AppName.MCP_TOOLS, args.namespace),
        }
        return env | urls, {}, [], {}
    if app is AppName.MCP_TOOLS:
        tools: dict[str, pulumi.Input[str]] = {
            "SEARXNG_URL": args.searxng_url,
            "SANDBOX_FUSION_URL": args.sandbox_fusion_url,
            "MEDIA_API_URL": app_url(AppName.MEDIA_API, args.namespace),
        }
        return env | tools, {}, [], {}
    store = args.object_store
    env_from = [store.credentials_secret] if store.credentials_secret else []
    service_account = {"serviceAccount": {"create": True, "name": store.service_account}}
    return env | store.media_env(), {}, env_from, service_account
