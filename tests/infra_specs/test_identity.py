"""The realm, Keycloak's settings and the apps' auth settings come from one set of values."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from apps.common.settings import ServiceSettings
from apps.llm_api.settings import LlmApiSettings
from infra.specs.identity import (
    BACKEND_SECRET_ENV,
    IdentityInputs,
    app_auth_env,
    issuer,
    keycloak_env,
    llm_api_keycloak_env,
    secret_env_var,
)
from infra.specs.keycloak_realm import (
    BACKEND_SERVICE_ACCOUNT_ROLES,
    RealmInputs,
    TokenLifetimes,
    client,
    impersonating_clients,
    realm_json,
    token_audiences,
)

IDENTITY = IdentityInputs(public_url="https://auth.example.com", realm="jan", namespace="identity")
REALM_INPUTS = RealmInputs(
    identity=IDENTITY,
    backend_client_secret=SecretStr("s3cret-from-random-password"),
    redirect_uris=("https://chat.example.com/auth/callback",),
    web_origins=("https://chat.example.com",),
    lifetimes=TokenLifetimes(access_token_seconds=600, session_idle_seconds=3600, session_max_seconds=86400),
)


def _settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> LlmApiSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return LlmApiSettings()


def test_apps_accept_exactly_what_the_realm_issues(monkeypatch: pytest.MonkeyPatch) -> None:
    realm = realm_json(REALM_INPUTS)
    env = app_auth_env(IDENTITY) | llm_api_keycloak_env(IDENTITY) | {BACKEND_SECRET_ENV: "s3cret"}
    settings = _settings_from_env(monkeypatch, env)
    # Keycloak's issuer is its hostname (KC_HOSTNAME) plus /realms/<realm>.
    kc_hostname = keycloak_env(IDENTITY)["KC_HOSTNAME"]
    assert settings.auth.issuer == f"{kc_hostname}/realms/{realm['realm']}" == issuer(IDENTITY)
    for client_id in (IDENTITY.public_client_id, IDENTITY.backend_client_id):
        assert settings.auth.audience in token_audiences(realm, client_id)
    assert settings.auth.jwks_url.endswith(f"/realms/{realm['realm']}/protocol/openid-connect/certs")
    assert settings.auth.jwks_url.startswith("http://keycloak-keycloakx-http.identity.svc.cluster.local:80/")
    keycloak = settings.keycloak
    assert keycloak is not None
    assert keycloak.realm == realm["realm"]
    assert settings.auth.jwks_url.startswith(keycloak.base_url + "/realms/")
    backend = client(realm, keycloak.backend_client_id)
    assert backend["publicClient"] is False and backend["serviceAccountsEnabled"] is True
    assert keycloak.guest_role in {role["name"] for role in realm["roles"]["realm"]}
    assert keycloak.audience is None
    # llm-api's guest login exchanges with requested_subject: only the backend client may impersonate.
    assert impersonating_clients(realm) == {keycloak.backend_client_id}


def test_every_app_parses_the_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in app_auth_env(IDENTITY).items():
        monkeypatch.setenv(name, value)
    auth = ServiceSettings().auth
    assert (auth.issuer, auth.audience) == ("https://auth.example.com/realms/jan", "jan-api")


def test_realm_roles_clients_and_lifetimes() -> None:
    realm = realm_json(REALM_INPUTS)
    roles = {role["name"]: role for role in realm["roles"]["realm"]}
    assert {"guest", "user", "admin"} <= set(roles)
    # Keycloak 26 imports the default role's composites only from `roles.realm` (RealmManager.importRealm
    # creates the `defaultRole` itself without composites): every new account must get `user` from here.
    default = roles["default-roles-jan"]
    assert default["composite"] is True
    assert set(default["composites"]["realm"]) == {"user", "offline_access", "uma_authorization"}
    assert set(default["composites"]["realm"]) <= set(roles), "composites must be roles of the realm"
    assert realm["defaultRole"]["name"] == "default-roles-jan"
    assert (realm["accessTokenLifespan"], realm["ssoSessionIdleTimeout"], realm["ssoSessionMaxLifespan"]) == (
        600,
        3600,
        86400,
    )
    public = client(realm, "jan-client")
    assert public["publicClient"] is True
    assert public["attributes"]["pkce.code.challenge.method"] == "S256"
    assert public["directAccessGrantsEnabled"] is False and public["implicitFlowEnabled"] is False
    assert public["redirectUris"] == ["https://chat.example.com/auth/callback"]
    backend = client(realm, "backend")
    assert backend["secret"] == "s3cret-from-random-password"
    assert backend["attributes"]["standard.token.exchange.enabled"] == "true"
    assert backend["standardFlowEnabled"] is False
    [account] = realm["users"]
    assert account["serviceAccountClientId"] == "backend"
    assert set(account["clientRoles"]["realm-management"]) >= {"manage-users", "view-users", "query-users"}
    assert tuple(account["clientRoles"]["realm-management"]) == BACKEND_SERVICE_ACCOUNT_ROLES
    assert json.loads(json.dumps(realm)) == realm


def test_secret_is_referenced_not_inlined() -> None:
    entry = secret_env_var(BACKEND_SECRET_ENV, "llm-api-keycloak", "client-secret")
    assert entry["valueFrom"]["secretKeyRef"] == {"name": "llm-api-keycloak", "key": "client-secret"}
    assert all("secret" not in value.lower() for value in llm_api_keycloak_env(IDENTITY).values())


def test_keycloak_runs_with_the_features_the_guest_flow_needs() -> None:
    env = keycloak_env(IDENTITY)
    assert "token-exchange" in env["KC_FEATURES"].split(",")
    assert env["KC_HTTP_RELATIVE_PATH"] == "/"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValidationError):
        IdentityInputs(public_url="https://auth.example.com/")
    with pytest.raises(ValidationError):
        IdentityInputs(public_url="auth.example.com")
    with pytest.raises(ValidationError):
        RealmInputs(identity=IDENTITY, backend_client_secret=SecretStr("x"), redirect_uris=("*",))
    with pytest.raises(ValueError, match="guest role"):
        realm_json(
            RealmInputs(
                identity=IDENTITY.model_copy(update={"guest_role": "visitor"}),
                backend_client_secret=SecretStr("x"),
            )
        )
    with pytest.raises(ValueError, match="session_idle"):
        lifetimes = TokenLifetimes(session_idle_seconds=7200, session_max_seconds=3600)
        realm_json(RealmInputs(identity=IDENTITY, backend_client_secret=SecretStr("x"), lifetimes=lifetimes))


def test_impersonation_can_be_left_out() -> None:
    realm = realm_json(REALM_INPUTS.model_copy(update={"guest_impersonation": False}))
    assert impersonating_clients(realm) == set()
    assert [c["clientId"] for c in realm["clients"]] == ["jan-client", "backend"]
