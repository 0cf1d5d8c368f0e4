"""Settings of llm-api's identity features: API keys, locally issued sessions, and Keycloak.

They are nested groups of `LlmApiSettings`, so the environment names are `API_KEYS__MAX_PER_USER`,
`LOCAL_TOKENS__ACCESS_TTL_SECONDS`, `KEYCLOAK__BASE_URL`, `KEYCLOAK__BACKEND_CLIENT_SECRET`, and so on.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class APIKeySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_per_user: int = Field(5, ge=1, le=1000)
    default_ttl_days: int = Field(90, ge=1)
    max_ttl_days: int = Field(365, ge=1)
    # `last_used_at` is written at most this often per key, so a busy key costs no write per request.
    last_used_interval_seconds: float = Field(60.0, ge=0)


class LocalTokenSettings(BaseModel):
    """Lifetimes of the tokens llm-api mints itself in local-issuer mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_ttl_seconds: int = Field(3600, ge=60)
    refresh_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)


class KeycloakSettings(BaseModel):
    """Keycloak mode of guest login: a confidential backend client with a service account.

    The service account needs the realm-management roles `manage-users` and `view-realm`, and the
    client must be allowed to exchange tokens (impersonation via `requested_subject`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    realm: str = "jan"
    backend_client_id: str = "backend"
    backend_client_secret: SecretStr
    # Passed as `audience` in the token exchange when set (the client the tokens are meant for).
    audience: str | None = None
    guest_role: str = "guest"
    timeout_seconds: float = Field(10.0, gt=0)


class OIDCSettings(BaseModel):
    """Browser login: llm-api as an OpenID Connect client (authorization code + PKCE S256).

    `discovery_url` is the provider's `/.well-known/openid-configuration` as llm-api reaches it (in a
    cluster Keycloak's in-cluster address, whose document names the public endpoints for browsers).
    `callback_url` is `/v1/auth/callback` as browsers reach it; it must be a redirect URI of the client
    at the provider. `allowed_redirects` are the only places a finished login may send the browser
    (exact URLs); a login without one answers the tokens as JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    discovery_url: str
    callback_url: str
    client_id: str = "jan-client"
    # Only for a confidential client; the realm's `jan-client` is public and relies on PKCE.
    client_secret: SecretStr | None = None
    allowed_redirects: tuple[str, ...] = ()
    scope: str = "openid profile email"
    login_ttl_seconds: int = Field(600, ge=30, le=3600)
    timeout_seconds: float = Field(10.0, gt=0)
