"""The Keycloak 26 realm as code: the JSON Keycloak imports at start (`--import-realm`).

Built from `IdentityInputs` (infra.specs.identity), the same values the apps' auth settings come from.
Decisions:

- Roles `guest`, `user`, `admin`; the realm's default role (`default-roles-<realm>`) carries `user`,
  `offline_access` and `uma_authorization`, so a self-registered account is a `user`. It is listed
  with its composites under `roles.realm`: Keycloak 26 ignores composites given under `defaultRole`.
  Guests are created by llm-api through the admin API and get `guest` on top (the apps treat `guest`
  as the narrower identity).
- The public client (`jan-client`) is what browser and desktop apps log in with: authorization code
  with PKCE `S256` only, no direct grants, no implicit flow, redirect URIs and web origins from the
  stack config (never `*`). llm-api's own browser login (`GET /v1/auth/login`) is this client too:
  its callback (`<api>/v1/auth/callback`, `api_callback_urls`) joins the redirect URIs, and its
  logout and revocation (`POST /v1/auth/logout|revoke`) use the client's end-session and revocation
  endpoints with the refresh token. Guest upgrade uses the backend's `manage-users` (update the user,
  reset its password, unmap `guest`, log its sessions out).
- The confidential backend client (`backend`) is llm-api's: client-credentials only (service account),
  its secret passed in (a Pulumi `RandomPassword`, stored in a Secret), and the service account holds
  the realm-management roles guest creation needs: `manage-users`, `view-users`, `query-users`, plus
  `view-realm` (llm-api looks up the `guest` role before mapping it). `standard.token.exchange.enabled`
  switches Keycloak 26's standard token exchange on for this client.
- Both clients carry an audience mapper, so every access token (also one issued by an exchange) has the
  API audience in `aud`; realm roles reach tokens through Keycloak's default `roles` scope
  (`realm_access.roles`, which `apps.common.auth.principal` reads).
- Guest sessions use `requested_subject` (direct impersonation, Keycloak's legacy token exchange,
  `KC_FEATURES=token-exchange,admin-fine-grained-authz:v1`). Keycloak allows it only when the
  realm-management client's fine-grained permission `admin-impersonating.permission.users` (scope
  `impersonate` on the `Users` resource) grants it to the calling client; `_realm_management_client`
  writes that permission with a client policy naming the backend client, in the shape Keycloak's own
  realm export uses. `guest_impersonation=False` leaves it out (a stack without guest login, or
  Keycloak without the v1 features).
- Token lifetimes come from `TokenLifetimes` (realm-wide access token lifespan and SSO session idle/max,
  which bound refresh tokens).
- `--import-realm` skips a realm that already exists: changes after the first start need the admin API
  (or deleting the realm in a dev cluster). Nothing here is a key: Keycloak generates the realm's
  signing keys, and apps follow them through the JWKS URL.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from infra.specs.identity import IdentityInputs

REALM_ROLES = {
    "guest": "Ephemeral guest account created by llm-api",
    "user": "Registered user",
    "admin": "Administrator of the Jan platform",
}
DEFAULT_REALM_ROLE = "user"
# Roles Keycloak creates in every realm (and lists in its own exports), part of the default role.
BUILT_IN_REALM_ROLES = {
    "offline_access": "${role_offline-access}",
    "uma_authorization": "${role_uma_authorization}",
}
BACKEND_SERVICE_ACCOUNT_ROLES = ("manage-users", "view-users", "query-users", "view-realm")
AUDIENCE_MAPPER = "oidc-audience-mapper"


class TokenLifetimes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    access_token_seconds: int = Field(300, ge=60, le=86400)
    session_idle_seconds: int = Field(24 * 3600, ge=300)
    session_max_seconds: int = Field(30 * 24 * 3600, ge=300)


class RealmInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    identity: IdentityInputs
    backend_client_secret: SecretStr
    redirect_uris: tuple[str, ...] = ()
    # llm-api's `/v1/auth/callback` as browsers reach it (one per public API host).
    api_callback_urls: tuple[str, ...] = ()
    web_origins: tuple[str, ...] = ()
    lifetimes: TokenLifetimes = TokenLifetimes()
    registration_allowed: bool = True
    guest_impersonation: bool = True
    display_name: str = "Jan"

    @field_validator("redirect_uris", "api_callback_urls", "web_origins")
    @classmethod
    def _no_wildcard_hosts(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if value in ("*", "+") or not value.startswith(("https://", "http://")):
                raise ValueError(f"{value!r} must be an absolute http(s) URL, not a wildcard")
        return values


def realm_json(inputs: RealmInputs) -> dict[str, Any]:
    """The realm representation for `kc.sh import` / `--import-realm` (Keycloak 26)."""
    identity = inputs.identity
    if identity.guest_role not in REALM_ROLES:
        raise ValueError(f"guest role {identity.guest_role!r} is not a realm role")
    if inputs.lifetimes.session_idle_seconds > inputs.lifetimes.session_max_seconds:
        raise ValueError("session_idle_seconds cannot exceed session_max_seconds")
    lifetimes = inputs.lifetimes
    default_role = f"default-roles-{identity.realm}"
    return {
        "realm": identity.realm,
        "displayName": inputs.display_name,
        "enabled": True,
        "sslRequired": "external",
        "registrationAllowed": inputs.registration_allowed,
        "loginWithEmailAllowed": True,
        "duplicateEmailsAllowed": False,
        "resetPasswordAllowed": False,
        "verifyEmail": False,
        "bruteForceProtected": True,
        "accessTokenLifespan": lifetimes.access_token_seconds,
        "ssoSessionIdleTimeout": lifetimes.session_idle_seconds,
        "ssoSessionMaxLifespan": lifetimes.session_max_seconds,
        "roles": {"realm": _realm_roles(default_role)},
        # Keycloak reads only the name here; the composites come from the role listed above.
        "defaultRole": {"name": default_role, "composite": True},
        "clients": [
            _public_client(inputs),
            _backend_client(inputs),
            *([_realm_management_client(identity)] if inputs.guest_impersonation else []),
        ],
        "users": [_backend_service_account(identity)],
    }


def _realm_roles(default_role: str) -> list[dict[str, Any]]:
    """Our roles, Keycloak's built-in ones, and the default role with its composites.

    Keycloak 26 creates the realm's default role without composites when it imports `defaultRole`;
    composites are imported only for roles listed here, so the default role is listed with them, and
    the built-in roles it contains are listed too (a composite must name a role of the import).
    """
    roles = [
        {"name": name, "description": description, "composite": False}
        for name, description in {**REALM_ROLES, **BUILT_IN_REALM_ROLES}.items()
    ]
    roles.append(
        {
            "name": default_role,
            "description": "${role_default-roles}",
            "composite": True,
            "composites": {"realm": [DEFAULT_REALM_ROLE, *BUILT_IN_REALM_ROLES]},
        }
    )
    return roles


def _audience_mapper(audience: str) -> dict[str, Any]:
    return {
        "name": f"audience-{audience}",
        "protocol": "openid-connect",
        "protocolMapper": AUDIENCE_MAPPER,
        "consentRequired": False,
        "config": {
            "included.custom.audience": audience,
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "id.token.claim": "false",
        },
    }


def _public_client(inputs: RealmInputs) -> dict[str, Any]:
    identity = inputs.identity
    return {
        "clientId": identity.public_client_id,
        "name": "Jan apps",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": True,
        "standardFlowEnabled": True,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": True,
        "redirectUris": list(dict.fromkeys((*inputs.redirect_uris, *inputs.api_callback_urls))),
        "webOrigins": list(inputs.web_origins),
        "attributes": {"pkce.code.challenge.method": "S256", "post.logout.redirect.uris": "+"},
        "protocolMappers": [_audience_mapper(identity.audience)],
    }


def _backend_client(inputs: RealmInputs) -> dict[str, Any]:
    identity = inputs.identity
    return {
        "clientId": identity.backend_client_id,
        "name": "llm-api backend",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": inputs.backend_client_secret.get_secret_value(),
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": True,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": {"standard.token.exchange.enabled": "true"},
        "protocolMappers": [_audience_mapper(identity.audience)],
    }


def _backend_service_account(identity: IdentityInputs) -> dict[str, Any]:
    return {
        "username": f"service-account-{identity.backend_client_id}",
        "enabled": True,
        "serviceAccountClientId": identity.backend_client_id,
        "clientRoles": {"realm-management": list(BACKEND_SERVICE_ACCOUNT_ROLES)},
    }


USERS_SCOPES = ("manage", "view", "map-roles", "manage-group-membership", "impersonate", "user-impersonated")
IMPERSONATION_PERMISSION = "admin-impersonating.permission.users"


def _realm_management_client(identity: IdentityInputs) -> dict[str, Any]:
    """Keycloak's admin client with one fine-grained permission: the backend may impersonate users."""
    policy = f"client-{identity.backend_client_id}"
    return {
        "clientId": "realm-management",
        "bearerOnly": True,
        "authorizationServicesEnabled": True,
        "authorizationSettings": {
            "allowRemoteResourceManagement": False,
            "policyEnforcementMode": "ENFORCING",
            "decisionStrategy": "UNANIMOUS",
            "scopes": [{"name": scope} for scope in USERS_SCOPES],
            "resources": [
                {"name": "Users", "type": "Users", "scopes": [{"name": scope} for scope in USERS_SCOPES]}
            ],
            "policies": [
                {
                    "name": policy,
                    "type": "client",
                    "logic": "POSITIVE",
                    "decisionStrategy": "UNANIMOUS",
                    "config": {"clients": json.dumps([identity.backend_client_id])},
                },
                {
                    "name": IMPERSONATION_PERMISSION,
                    "type": "scope",
                    "logic": "POSITIVE",
                    "decisionStrategy": "UNANIMOUS",
                    "config": {
                        "resources": json.dumps(["Users"]),
                        "scopes": json.dumps(["impersonate"]),
                        "applyPolicies": json.dumps([policy]),
                    },
                },
            ],
        },
    }


def impersonating_clients(realm: dict[str, Any]) -> set[str]:
    """Client ids the realm lets impersonate users through `IMPERSONATION_PERMISSION`."""
    try:
        settings = client(realm, "realm-management")["authorizationSettings"]
    except KeyError:
        return set()
    policies = {policy["name"]: policy for policy in settings["policies"]}
    permission = policies.get(IMPERSONATION_PERMISSION)
    if permission is None or json.loads(permission["config"]["scopes"]) != ["impersonate"]:
        return set()
    clients: set[str] = set()
    for name in json.loads(permission["config"]["applyPolicies"]):
        if policies[name]["type"] == "client":
            clients |= set(json.loads(policies[name]["config"]["clients"]))
    return clients


def client(realm: dict[str, Any], client_id: str) -> dict[str, Any]:
    """The client named `client_id` in a realm built by `realm_json`."""
    for candidate in realm["clients"]:
        if candidate["clientId"] == client_id:
            return dict(candidate)
    raise KeyError(client_id)


def token_audiences(realm: dict[str, Any], client_id: str) -> set[str]:
    """The audiences an access token issued to `client_id` carries through audience mappers."""
    return {
        mapper["config"]["included.custom.audience"]
        for mapper in client(realm, client_id).get("protocolMappers", [])
        if mapper["protocolMapper"] == AUDIENCE_MAPPER
        and mapper["config"].get("access.token.claim") == "true"
    }
