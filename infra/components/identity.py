"""Identity: Keycloak 26 (codecentric `keycloakx` chart) importing the realm generated as code.

The realm (`infra.specs.keycloak_realm.realm_json`) and the apps' auth settings
(`infra.specs.identity.app_auth_env`) are built from one `IdentityInputs`, so issuer, audience and JWKS
URL cannot disagree. Decisions:
- The realm JSON is a ConfigMap mounted at `/opt/keycloak/data/import` (`start --import-realm`); it
  holds no secret: the backend client's secret is the placeholder `${JAN_BACKEND_CLIENT_SECRET}`, which
  Keycloak's import resolves from the environment, fed from a Secret. The secret itself is a
  pulumi-random password (a Pulumi secret), stored once for Keycloak and once in the apps namespace
  for llm-api (`KEYCLOAK__BACKEND_CLIENT_SECRET`).
- `--import-realm` creates the realm only once; later realm changes need the admin API (see the
  specs module).
- Its own database: a Secret named by `identity.databaseSecret` in the identity namespace (`host`,
  `port`, `database`, `username`, `password`), written here from the stack's `DatabaseEndpoint`: the
  database bootstrap Job (RDS or CloudNativePG) creates the `keycloak` role and database next to the
  apps' and hands the password back; Keycloak starts after that Job. Keycloak gets the login as
  `KC_DB_URL_*` variables, so it never sees another app's credentials. Its pool is capped
  (`KC_DB_POOL_MAX_SIZE`, `infra.connections.KEYCLOAK_POOL`) so the apps' connection budget holds.
- The bootstrap admin's password is generated too (Secret `keycloak-admin`; see the stack outputs).
- Browsers reach Keycloak directly: on AWS through its own NLB (TLS from the gateway's ACM
  certificate, which covers `auth.<domain>`), in dev through `kubectl port-forward`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml
from pydantic import SecretStr

from infra import connections, helm
from infra.components.cluster_addons import nlb_annotations
from infra.database import DatabaseEndpoint
from infra.service_config import IdentityConfig
from infra.specs.identity import IdentityInputs, app_auth_env, keycloak_env, login_callback_url
from infra.specs.keycloak_realm import RealmInputs, TokenLifetimes, realm_json
from infra.versions import CHARTS, IMAGES

RELEASE = "keycloak"
REALM_CONFIG_MAP = "keycloak-realm"
IMPORT_DIR = "/opt/keycloak/data/import"
SECRET_PLACEHOLDER_ENV = "JAN_BACKEND_CLIENT_SECRET"  # noqa: S105 - an environment variable name
BACKEND_SECRET = "keycloak-backend-client"  # noqa: S105 - a Secret's name
BACKEND_SECRET_KEY = "client-secret"  # noqa: S105 - a key name
ADMIN_SECRET = "keycloak-admin"  # noqa: S105 - a Secret's name
ADMIN_PASSWORD_KEY = "password"  # noqa: S105 - a key in that Secret
DATABASE = "keycloak"  # its role and database on the stack's Postgres
_SELECTOR = {"app.kubernetes.io/name": "keycloakx", "app.kubernetes.io/instance": RELEASE}


@dataclass(frozen=True, kw_only=True)
class IdentityArgs:
    identity: IdentityInputs
    settings: IdentityConfig
    web_origins: tuple[str, ...]
    apps_namespace: str
    certificate_arn: pulumi.Input[str] | None = None
    # The stack's Postgres, with a login for `DATABASE` (`DatabaseEndpoint.service_passwords`).
    database: DatabaseEndpoint | None = None
    depends_on: list[pulumi.Resource]


class Identity(pulumi.ComponentResource):
    """The realm, the generated secrets, Keycloak's release and (on AWS) its public load balancer."""

    realm: dict[str, Any]
    app_env: dict[str, str]
    app_secrets: list[pulumi.Resource]
    """What the apps wait for here: the backend client's Secret in their namespace, not Keycloak."""

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Identity", name, None, opts)
        namespace = args.identity.namespace
        child = pulumi.ResourceOptions(parent=self)
        on_cluster = pulumi.ResourceOptions(parent=self, depends_on=args.depends_on)
        self.realm = realm(args)
        self.app_env = app_auth_env(args.identity)
        backend = random.RandomPassword(f"{name}-backend-client-secret", length=40, special=False, opts=child)
        admin = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)
        realm_map = k8s.core.v1.ConfigMap(
            f"{name}-realm",
            metadata=_meta(REALM_CONFIG_MAP, namespace),
            data={f"{args.identity.realm}-realm.json": json.dumps(self.realm, indent=2, sort_keys=True)},
            opts=on_cluster,
        )
        secrets: list[pulumi.Resource] = [
            _secret(
                f"{name}-backend-secret",
                BACKEND_SECRET,
                namespace,
                {BACKEND_SECRET_KEY: backend.result},
                on_cluster,
            ),
            _secret(
                f"{name}-backend-secret-apps",
                BACKEND_SECRET,
                args.apps_namespace,
                {BACKEND_SECRET_KEY: backend.result},
                on_cluster,
            ),
            _secret(
                f"{name}-admin",
                ADMIN_SECRET,
                namespace,
                {"username": "jan-admin", ADMIN_PASSWORD_KEY: admin.result},
                on_cluster,
            ),
        ]
        self.app_secrets = [secrets[1]]
        if args.database is not None:
            secrets += [database_secret(name, args, args.database, on_cluster), args.database.ready]
        helm.upstream_release(
            RELEASE,
            CHARTS["keycloakx"],
            namespace=namespace,
            values=keycloak_values(args),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[realm_map, *secrets])
            ),
        )
        if args.certificate_arn is not None:
            _public_service(name, namespace, args.certificate_arn, on_cluster)
        self.register_outputs({"issuer": self.app_env["AUTH__ISSUER"]})


def realm(args: IdentityArgs) -> dict[str, Any]:
    settings = args.settings
    return realm_json(
        RealmInputs(
            identity=args.identity,
            backend_client_secret=SecretStr(f"${{{SECRET_PLACEHOLDER_ENV}}}"),
            redirect_uris=tuple(settings.redirect_uris),
            api_callback_urls=tuple(url for url in [login_callback_url(args.identity)] if url),
            web_origins=args.web_origins,
            lifetimes=TokenLifetimes(
                access_token_seconds=settings.access_token_seconds,
                session_idle_seconds=settings.session_idle_seconds,
                session_max_seconds=settings.session_max_seconds,
            ),
            registration_allowed=settings.registration_allowed,
        )
    )


def database_secret(
    name: str, args: IdentityArgs, database: DatabaseEndpoint, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret:
    """Keycloak's login on the stack's Postgres, in the keys `keycloak_values` reads."""
    login: dict[str, pulumi.Input[str]] = {
        "host": database.host,
        "port": database.port.apply(str),
        "database": DATABASE,
        "username": DATABASE,
        "password": database.service_passwords[DATABASE],
    }
    return _secret(f"{name}-database", args.settings.database_secret, args.identity.namespace, login, opts)


def keycloak_values(args: IdentityArgs) -> dict[str, Any]:
    image = IMAGES["keycloak"]
    plain = {
        key: value for key, value in keycloak_env(args.identity).items() if key != "KC_HTTP_RELATIVE_PATH"
    }
    env: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in plain.items()]
    # Keycloak's default pool is 100 connections per replica; the connection budget counts this many.
    env.append({"name": "KC_DB_POOL_MAX_SIZE", "value": str(connections.KEYCLOAK_POOL)})
    env += [
        _from_secret(SECRET_PLACEHOLDER_ENV, BACKEND_SECRET, BACKEND_SECRET_KEY),
        _from_secret("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN_SECRET, "username"),
        _from_secret("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_SECRET, ADMIN_PASSWORD_KEY),
    ]
    database = args.settings.database_secret
    for variable, key in (
        ("KC_DB_URL_HOST", "host"),
        ("KC_DB_URL_PORT", "port"),
        ("KC_DB_URL_DATABASE", "database"),
        ("KC_DB_USERNAME", "username"),
        ("KC_DB_PASSWORD", "password"),
    ):
        env.append(_from_secret(variable, database, key))
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "replicas": args.settings.replicas,
        "args": ["start", "--import-realm"],
        "http": {"relativePath": "/"},
        "proxy": {"enabled": False},
        "database": {"vendor": "postgres"},
        # keycloakx takes these as templated YAML strings.
        "extraEnv": yaml.safe_dump(env, sort_keys=False),
        "extraVolumes": yaml.safe_dump([{"name": "realm", "configMap": {"name": REALM_CONFIG_MAP}}]),
        "extraVolumeMounts": yaml.safe_dump([{"name": "realm", "mountPath": IMPORT_DIR, "readOnly": True}]),
        "health": {"enabled": True},
        "metrics": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        # The chart's default is no PDB (`{}`): one replica gets none, so only more replicas set it.
        **({"podDisruptionBudget": {"maxUnavailable": 1}} if args.settings.replicas > 1 else {}),
        "service": {"type": "ClusterIP", "httpPort": args.identity.service_port},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }


def _from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _meta(name: str, namespace: str) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(
        name=name, namespace=namespace, labels={"app.kubernetes.io/part-of": "jan"}
    )


def _secret(
    logical: str, name: str, namespace: str, data: dict[str, pulumi.Input[str]], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret:
    return k8s.core.v1.Secret(
        logical,
        metadata=_meta(name, namespace),
        type="Opaque",
        string_data=pulumi.Output.secret(data),
        opts=opts,
    )


def _public_service(
    name: str, namespace: str, certificate_arn: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        f"{name}-public",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="keycloak-public",
            namespace=namespace,
            labels={"app.kubernetes.io/part-of": "jan"},
            annotations=nlb_annotations(certificate_arn),
        ),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="LoadBalancer",
            external_traffic_policy="Local",
            selector=_SELECTOR,
            ports=[k8s.core.v1.ServicePortArgs(name="https", port=443, target_port="http", protocol="TCP")],
        ),
        opts=opts,
    )
