"""Wiring of the auth part into llm-api: `include_auth_routes(app)` at creation,
`start_auth(app, settings)` in the lifespan once `app.state.sessions` exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from apps.common.auth.principal import Authenticator
from apps.llm_api.auth.routes import api_keys, internal, session
from apps.llm_api.auth.services.api_keys import APIKeyStore
from apps.llm_api.auth.services.authenticator import UserRecordingAuthenticator
from apps.llm_api.auth.services.keycloak import KeycloakSessions
from apps.llm_api.auth.services.tokens import LocalSessions, SessionIssuer
from apps.llm_api.auth.services.users import UserDirectory

if TYPE_CHECKING:
    from apps.llm_api.settings import LlmApiSettings


def include_auth_routes(app: FastAPI) -> None:
    for module in (api_keys, session, internal):
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


def _session_issuer(app: FastAPI, settings: LlmApiSettings) -> SessionIssuer | None:
    # Keycloak wins when configured: in a cluster it is the issuer every service trusts.
    if settings.keycloak is not None:
        return KeycloakSessions(settings.keycloak, app.state.http)
    local_issuer = getattr(app.state, "local_issuer", None)
    if local_issuer is not None:
        return LocalSessions(local_issuer, settings.local_tokens)
    return None
