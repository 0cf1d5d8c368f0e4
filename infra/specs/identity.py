"""One source of truth for identity: the values Keycloak's realm and every app derive their auth from.

`IdentityInputs` holds what a stack decides (the public URL Keycloak answers on, the realm, where
Keycloak runs in the cluster, client ids, the API audience); everything else is computed here, so the
realm (`infra.specs.keycloak_realm`), Keycloak's own settings and the apps' environment cannot drift
apart. Decisions:

- Issuer = `<public_url>/realms/<realm>`. Keycloak runs with hostname v2 (`KC_HOSTNAME` = the public
  URL, `KC_HTTP_RELATIVE_PATH=/`), so the `iss` of every token is that URL even when the token was
  requested in-cluster (llm-api talks to Keycloak's Service; `KC_HOSTNAME_BACKCHANNEL_DYNAMIC` lets
  those backchannel calls use the internal address).
- JWKS URL = Keycloak's in-cluster certs endpoint: apps fetch keys without leaving the cluster or
  going through Kong, and a public-DNS outage does not stop token validation.
- Audience = one API audience (`jan-api`, the apps' default) stamped into access tokens by an audience
  mapper on both clients; the apps accept only it.
- llm-api's `KEYCLOAK__AUDIENCE` stays unset: in a token exchange `audience` names a *client*, and the
  audience mapper already puts `jan-api` into the exchanged tokens.
- llm-api's guest login uses `requested_subject` (Keycloak's subject impersonation, a legacy v1
  token-exchange flow), so Keycloak runs with `KC_FEATURES=token-exchange,admin-fine-grained-authz:v1`;
  see `keycloak_env`.
- Environment names follow the apps' settings models (`env_nested_delimiter="__"`): `AUTH__ISSUER`
  (apps.common.settings.AuthSettings) and `KEYCLOAK__BASE_URL` … (apps.llm_api.auth.settings).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

BACKEND_SECRET_ENV = "KEYCLOAK__BACKEND_CLIENT_SECRET"  # noqa: S105 - an environment variable name


class IdentityInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The URL browsers and apps see Keycloak on, e.g. https://auth.example.com (no path, no slash).
    public_url: str
    realm: str = Field("jan", pattern=r"^[a-z][a-z0-9-]*$")
    namespace: str = Field("identity", min_length=1)
    # Keycloak's HTTP Service in `namespace` (keycloakx names it `<fullname>-http`) and its port.
    service_name: str = "keycloak-keycloakx-http"
    service_port: int = Field(80, gt=0, lt=65536)
    audience: str = "jan-api"
    public_client_id: str = "jan-client"
    backend_client_id: str = "backend"
    guest_role: str = "guest"
    # Where browsers reach the API (`StackConfig.gateway_url`): llm-api's login callback lives under it.
    api_origin: str | None = None
    # Where a finished browser login may send the browser (exact URLs).
    login_redirects: tuple[str, ...] = ()

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")) or url.endswith("/") or "/" in url.split("://", 1)[1]:
            raise ValueError(f"public_url {url!r} must be scheme://host[:port] without a path")
        return url


def issuer(inputs: IdentityInputs) -> str:
    return f"{inputs.public_url}/realms/{inputs.realm}"


def internal_base_url(inputs: IdentityInputs) -> str:
    return f"http://{inputs.service_name}.{inputs.namespace}.svc.cluster.local:{inputs.service_port}"


def jwks_url(inputs: IdentityInputs) -> str:
    return f"{internal_base_url(inputs)}/realms/{inputs.realm}/protocol/openid-connect/certs"


def app_auth_env(inputs: IdentityInputs) -> dict[str, str]:
    """The token-validation settings every app gets (apps.common.settings.AuthSettings)."""
    return {
        "AUTH__ISSUER": issuer(inputs),
        "AUTH__AUDIENCE": inputs.audience,
        "AUTH__JWKS_URL": jwks_url(inputs),
    }


def llm_api_keycloak_env(inputs: IdentityInputs) -> dict[str, str]:
    """llm-api's Keycloak settings (apps.llm_api.auth.settings.KeycloakSettings), the secret excepted.

    The backend client secret goes in as `BACKEND_SECRET_ENV` from a Secret: see `secret_env_var`.
    """
    return {
        "KEYCLOAK__BASE_URL": internal_base_url(inputs),
        "KEYCLOAK__REALM": inputs.realm,
        "KEYCLOAK__BACKEND_CLIENT_ID": inputs.backend_client_id,
        "KEYCLOAK__GUEST_ROLE": inputs.guest_role,
    } | llm_api_login_env(inputs)


def login_callback_url(inputs: IdentityInputs) -> str | None:
    """llm-api's `/v1/auth/callback` as browsers reach it: a redirect URI of the public client."""
    return f"{inputs.api_origin}/v1/auth/callback" if inputs.api_origin else None


def llm_api_login_env(inputs: IdentityInputs) -> dict[str, str]:
    """llm-api's browser-login settings (apps.llm_api.auth.settings.OIDCSettings), with the public client.

    Discovery goes to Keycloak's in-cluster address; with a dynamic backchannel its document names the
    public authorize endpoint for browsers and in-cluster token endpoints for llm-api.
    """
    callback = login_callback_url(inputs)
    if callback is None:
        return {}
    realm_url = f"{internal_base_url(inputs)}/realms/{inputs.realm}"
    return {
        "OIDC__DISCOVERY_URL": f"{realm_url}/.well-known/openid-configuration",
        "OIDC__CALLBACK_URL": callback,
        "OIDC__CLIENT_ID": inputs.public_client_id,
        "OIDC__ALLOWED_REDIRECTS": json.dumps(list(inputs.login_redirects)),
    }


def secret_env_var(name: str, secret_name: str, key: str) -> dict[str, Any]:
    """A container `env` entry that reads `key` of Secret `secret_name`."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}


def keycloak_env(inputs: IdentityInputs) -> dict[str, str]:
    """Keycloak 26 server settings the realm and the apps rely on (the chart's extra env)."""
    return {
        "KC_HOSTNAME": inputs.public_url,
        "KC_HOSTNAME_BACKCHANNEL_DYNAMIC": "true",
        "KC_HTTP_RELATIVE_PATH": "/",
        "KC_HTTP_ENABLED": "true",
        "KC_PROXY_HEADERS": "xforwarded",
        "KC_HEALTH_ENABLED": "true",
        "KC_METRICS_ENABLED": "true",
        "KC_FEATURES": "token-exchange,admin-fine-grained-authz:v1",
    }
