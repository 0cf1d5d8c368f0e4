"""Kong's rendered config agrees with the route table; Keycloak's realm agrees with the apps' auth env."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit

import pytest
import yaml

from apps.gateway.routes import APPS, ROUTES, match
from apps.llm_api.settings import LlmApiSettings
from infra.specs.keycloak_realm import REALM_ROLES, client, impersonating_clients, token_audiences
from infra.specs.kong import path_regex
from infra.versions import CHARTS, IMAGES
from tests.infra.conftest import STACKS, Rendered
from tests.infra.services_helpers import manifest, release, values
from tests.infra_specs.kong_matching import kong_route_target

PUBLIC = tuple(route for route in ROUTES if route.public)
AUTH_KEYS = ("AUTH__ISSUER", "AUTH__AUDIENCE", "AUTH__JWKS_URL")
PUBLIC_API = {
    "dev": "http://localhost:8000",  # Kong through `kubectl port-forward` (README, "Platform")
    "staging": "https://api.staging.jan.ai",
    "prod": "https://api.jan.ai",
}
LOGIN_REDIRECTS = {"dev": ("http://localhost:3000/",), "staging": (), "prod": ("https://chat.jan.ai/",)}


def _kong_config(rendered: Rendered) -> dict[str, object]:
    config_map = manifest(rendered, "gateway", "ConfigMap", "kong-declarative")
    loaded: dict[str, object] = yaml.safe_load(config_map["data"]["kong.yml"])
    return loaded


@pytest.mark.parametrize("stack", STACKS)
def test_kong_routes_agree_with_the_route_table(stack: str, rendered: dict[str, Rendered]) -> None:
    config = _kong_config(rendered[stack])
    paths = ["/", "/v1", "/healthz", "/internal/api-keys/validate"]
    for route in ROUTES:
        base = route.prefix.rstrip("/")
        paths += [base, f"{base}/", f"{base}/abc/def", f"{base}x", f"{base}-x"]
    for path in paths:
        expected = match(path, PUBLIC)
        assert kong_route_target(config, path) == (expected.app if expected else None), path


def test_kong_services_point_at_the_app_services_with_the_route_timeouts(prod: Rendered) -> None:
    config = _kong_config(prod)
    services = config["services"]
    assert isinstance(services, list)
    for route in PUBLIC:
        (service,) = [
            s for s in services if any(r["paths"] == [path_regex(route.prefix)] for r in s["routes"])
        ]
        app = APPS[route.app]
        assert service["url"] == f"http://{route.app.value}.jan.svc.cluster.local:{app.port}"
        assert service["read_timeout"] == int(route.timeout_seconds * 1000)
        (kong_route,) = [r for r in service["routes"] if r["paths"] == [path_regex(route.prefix)]]
        limits = [p for p in kong_route["plugins"] if p["name"] == "rate-limiting"]
        assert [p["config"]["minute"] for p in limits] == (
            [route.rate_limit_per_minute] if route.rate_limit_per_minute else []
        )
        assert kong_route["response_buffering"] is (not route.streaming)


def test_kong_global_plugins_follow_the_stack(prod: Rendered, rendered: dict[str, Rendered]) -> None:
    for stack, origins in (("prod", ["https://chat.jan.ai"]), ("dev", ["http://localhost:3000"])):
        plugins = {p["name"]: p for p in _kong_config(rendered[stack])["plugins"]}  # type: ignore[attr-defined]
        assert plugins["cors"]["config"]["origins"] == origins
        assert plugins["correlation-id"]["config"]["header_name"] == "X-Request-Id"
        endpoint = plugins["opentelemetry"]["config"]["traces_endpoint"]
        assert endpoint == "http://otel-collector.observability.svc.cluster.local:4318/v1/traces"


def test_kong_release_is_db_less_pinned_and_rolls_on_config_changes(rendered: dict[str, Rendered]) -> None:
    for stack in STACKS:
        inputs = release(rendered[stack], "kong")
        assert (inputs["chart"], inputs["version"]) == (CHARTS["kong"].chart, CHARTS["kong"].version)
        kong = inputs["values"]
        assert kong["image"] == {"repository": IMAGES["kong"].repository, "tag": IMAGES["kong"].tag}
        assert kong["env"]["database"] == "off"
        assert kong["ingressController"]["enabled"] is False and kong["admin"]["enabled"] is False
        assert kong["dblessConfig"] == {"configMap": "kong-declarative"}
        text = manifest(rendered[stack], "gateway", "ConfigMap", "kong-declarative")["data"]["kong.yml"]
        assert kong["podAnnotations"]["checksum/kong-config"] == hashlib.sha256(text.encode()).hexdigest()


def test_proxy_is_a_tls_load_balancer_on_aws_and_cluster_ip_in_dev(rendered: dict[str, Rendered]) -> None:
    prod_proxy = values(rendered["prod"], "kong")["proxy"]
    assert prod_proxy["type"] == "LoadBalancer"
    annotations = prod_proxy["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"].startswith("arn:aws:acm:")
    assert prod_proxy["tls"] == {"enabled": True, "servicePort": 443, "overrideServiceTargetPort": 8000}
    certificate = rendered["prod"].one("aws:acm/certificate:Certificate", "jan-prod-certificate")["inputs"]
    assert certificate["domainName"] == "api.jan.ai"
    assert certificate["subjectAlternativeNames"] == ["auth.jan.ai"]
    assert values(rendered["dev"], "kong")["proxy"]["type"] == "ClusterIP"
    assert not rendered["dev"].of_type("aws:acm/certificate:Certificate")


def _realm(rendered: Rendered) -> dict[str, object]:
    config_map = manifest(rendered, "identity", "ConfigMap", "keycloak-realm")
    (text,) = config_map["data"].values()
    loaded: dict[str, object] = json.loads(text)
    return loaded


@pytest.mark.parametrize("stack", STACKS)
def test_issuer_audience_and_jwks_agree_between_keycloak_and_the_apps(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    realm = _realm(rendered[stack])
    keycloak = values(rendered[stack], "keycloak")
    env = {entry["name"]: entry.get("value") for entry in yaml.safe_load(keycloak["extraEnv"])}
    app_env = manifest(rendered[stack], "jan", "ConfigMap", "media-api")["data"]
    for app in APPS:
        app_config = manifest(rendered[stack], "jan", "ConfigMap", app.value)["data"]
        assert {key: app_config[key] for key in AUTH_KEYS} == {key: app_env[key] for key in AUTH_KEYS}
    # The issuer Keycloak stamps is its hostname plus the realm path (relative path "/").
    assert keycloak["http"]["relativePath"] == "/"
    assert app_env["AUTH__ISSUER"] == f"{env['KC_HOSTNAME']}/realms/{realm['realm']}"
    # Both clients put the apps' audience into access tokens.
    for client_id in ("jan-client", "backend"):
        assert token_audiences(realm, client_id) == {app_env["AUTH__AUDIENCE"]}
    # JWKS comes from Keycloak's in-cluster Service (keycloakx names it <release>-keycloakx-http).
    jwks = urlsplit(app_env["AUTH__JWKS_URL"])
    inputs = release(rendered[stack], "keycloak")
    assert jwks.hostname == f"{inputs['name']}-keycloakx-http.{inputs['namespace']}.svc.cluster.local"
    assert jwks.port == keycloak["service"]["httpPort"]
    assert jwks.path == f"/realms/{realm['realm']}/protocol/openid-connect/certs"
    llm_api = manifest(rendered[stack], "jan", "ConfigMap", "llm-api")["data"]
    assert llm_api["KEYCLOAK__REALM"] == realm["realm"]
    assert app_env["AUTH__JWKS_URL"].startswith(llm_api["KEYCLOAK__BASE_URL"])
    assert impersonating_clients(realm) == {llm_api["KEYCLOAK__BACKEND_CLIENT_ID"]}


@pytest.mark.parametrize("stack", STACKS)
def test_browser_login_settings_parse_and_name_a_redirect_uri_of_the_public_client(
    stack: str, rendered: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    # llm-api's own settings model reads the rendered environment, as it will in the pod.
    for key, value in manifest(rendered[stack], "jan", "ConfigMap", "llm-api")["data"].items():
        monkeypatch.setenv(key, value)
    # What the pod reads from Secrets instead.
    for name in ("DATABASE_URL", "KEYCLOAK__BACKEND_CLIENT_SECRET", "MODEL_PROVIDER_SECRET"):
        monkeypatch.setenv(name, "from-a-secret")
    oidc = LlmApiSettings().oidc
    assert oidc is not None
    public = client(_realm(rendered[stack]), "jan-client")
    assert oidc.callback_url in public["redirectUris"]
    assert oidc.client_id == "jan-client" and public["publicClient"] is True
    assert urlsplit(oidc.callback_url).hostname == urlsplit(PUBLIC_API[stack]).hostname
    assert oidc.callback_url == f"{PUBLIC_API[stack]}/v1/auth/callback"
    assert oidc.allowed_redirects == LOGIN_REDIRECTS[stack]
    assert oidc.discovery_url.endswith(
        f"/realms/{_realm(rendered[stack])['realm']}/.well-known/openid-configuration"
    )


def test_realm_roles_clients_and_lifetimes_come_from_config(prod: Rendered) -> None:
    realm = _realm(prod)
    names = {role["name"] for role in realm["roles"]["realm"]}  # type: ignore[index]
    assert set(REALM_ROLES) | {"default-roles-jan"} <= names
    public = client(realm, "jan-client")
    assert public["publicClient"] is True and public["redirectUris"] == [
        "https://chat.jan.ai/*",
        "https://api.jan.ai/v1/auth/callback",
    ]
    assert public["webOrigins"] == ["https://chat.jan.ai"]
    backend = client(realm, "backend")
    assert backend["serviceAccountsEnabled"] is True
    # The realm file carries a placeholder; the secret reaches Keycloak only through its Secret.
    assert backend["secret"] == "${JAN_BACKEND_CLIENT_SECRET}"
    assert realm["accessTokenLifespan"] == 300 and realm["ssoSessionMaxLifespan"] == 2592000


def test_keycloak_imports_the_realm_with_generated_secrets_and_its_own_database(prod: Rendered) -> None:
    inputs = release(prod, "keycloak")
    assert (inputs["chart"], inputs["version"]) == (CHARTS["keycloakx"].chart, CHARTS["keycloakx"].version)
    keycloak = inputs["values"]
    assert keycloak["image"]["tag"].startswith("26.")
    assert keycloak["args"] == ["start", "--import-realm"]
    mounts = yaml.safe_load(keycloak["extraVolumeMounts"])
    volumes = yaml.safe_load(keycloak["extraVolumes"])
    assert mounts[0]["mountPath"] == "/opt/keycloak/data/import"
    assert volumes[0]["configMap"]["name"] == "keycloak-realm"
    env = {entry["name"]: entry for entry in yaml.safe_load(keycloak["extraEnv"])}
    secret_refs = {
        name: e["valueFrom"]["secretKeyRef"]["name"] for name, e in env.items() if "valueFrom" in e
    }
    assert secret_refs["JAN_BACKEND_CLIENT_SECRET"] == "keycloak-backend-client"
    assert secret_refs["KC_BOOTSTRAP_ADMIN_PASSWORD"] == "keycloak-admin"
    assert secret_refs["KC_DB_PASSWORD"] == secret_refs["KC_DB_URL_HOST"] == "keycloak-database"
    passwords = {item["name"] for item in prod.of_type("random:index/randomPassword:RandomPassword")}
    assert {"jan-prod-identity-backend-client-secret", "jan-prod-identity-admin-password"} <= passwords
    for namespace in ("identity", "jan"):
        secret = manifest(prod, namespace, "Secret", "keycloak-backend-client")
        assert list(secret["stringData"]) == ["client-secret"]
    public = manifest(prod, "identity", "Service", "keycloak-public")
    assert public["spec"]["type"] == "LoadBalancer"
    assert public["spec"]["selector"] == {
        "app.kubernetes.io/name": "keycloakx",
        "app.kubernetes.io/instance": "keycloak",
    }
