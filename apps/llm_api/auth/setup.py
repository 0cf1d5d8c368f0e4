"""Wiring of the auth part into llm-api: `include_auth_routes(app)` at creation,
`start_auth(app, settings)` in the lifespan once `app.state.sessions` exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from apps.common.auth.jwks import JWKSVerifier
from apps.common.auth.principal import Authenticator
from apps.llm_api.auth.routes import accounts, api_keys, internal, provider, session
from apps.llm_api.auth.services.api_keys import APIKeyStore
from apps.llm_api.auth.services.authenticator import UserRecordingAuthenticator
from apps.llm_api.auth.services.keycloak import KeycloakSessions
from apps.llm_api.auth.services.local_provider import LocalProvider
from apps.llm_api.auth.services.oidc import OIDCClient
from apps.llm_api.auth.services.tokens import LocalSessions, SessionIssuer
from apps.llm_api.auth.services.upgrade import AccountUpgrader, KeycloakUpgrader, LocalUpgrader
from apps.llm_api.auth.services.users import UserDirectory

if TYPE_CHECKING:
    from apps.llm_api.settings import LlmApiSettings


def include_auth_routes(app: FastAPI) -> None:
    for module in (api_keys, session, accounts, internal, provider):
        app.include_router(module.router)


def start_auth(app: FastAPI, settings: LlmApiSettings) -> None:
    users = UserDirectory(app.state.sessions)
    keys = APIKeyStore(app.state.sessions, users, settings.api_keys)
    kit: Authenticator = app.state.authenticator
    app.state.users = users
    app.state.api_keys = keys
    app.state.authenticator = UserRecordingAuthenticator(kit.verifier, keys, users)
    app.state.session_issuer = _session_issuer(app, settings)
    # Local mode: guest login is the only way in, so guests may hold keys (routes/api_keys.py).
    app.state.guests_may_create_keys = isinstance(app.state.session_issuer, LocalSessions)
    app.state.upgrader = _accounts(app, settings)
    app.state.oidc = _oidc_client(app, settings)


def _accounts(app: FastAPI, settings: LlmApiSettings) -> AccountUpgrader | None:
    """Keycloak, or in local mode the local identity provider (`services/local_provider.py`)."""
    issuer = app.state.session_issuer
    if isinstance(issuer, KeycloakSessions):
        return KeycloakUpgrader(issuer)
    if not isinstance(issuer, LocalSessions):
        return None
    oidc = settings.oidc
    local = LocalProvider(
        app.state.sessions,
        issuer,
        app.state.local_issuer,
        client_id=oidc.client_id if oidc else "jan-client",
        redirect_uris=(oidc.callback_url,) if oidc else (),
    )
    issuer.state = local  # refresh tokens are checked against its sessions and revocations
    app.state.local_provider = local
    return LocalUpgrader(local, issuer, app.state.sessions)


def _oidc_client(app: FastAPI, settings: LlmApiSettings) -> OIDCClient | None:
    if settings.oidc is None:
        return None
    auth = settings.auth
    # ID tokens come from the same issuer and keys as access tokens, addressed to our client id.
    id_tokens = JWKSVerifier(
        jwks_url=auth.jwks_url,
        issuer=auth.issuer,
        audience=settings.oidc.client_id,
        client=app.state.http,
        algorithms=auth.algorithms,
        leeway_seconds=auth.clock_skew_seconds,
        cache_seconds=auth.jwks_cache_seconds,
    )
    return OIDCClient(settings.oidc, app.state.http, app.state.sessions, id_tokens)


def _session_issuer(app: FastAPI, settings: LlmApiSettings) -> SessionIssuer | None:
    # Keycloak wins when configured: in a cluster it is the issuer every service trusts.
    if settings.keycloak is not None:
        return KeycloakSessions(settings.keycloak, app.state.http)
    local_issuer = getattr(app.state, "local_issuer", None)
    if local_issuer is not None:
        return LocalSessions(local_issuer, settings.local_tokens)
    return None
