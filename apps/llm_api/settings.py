"""Settings of llm-api."""

from __future__ import annotations

from pathlib import Path

from apps.common.settings import ServiceSettings
from apps.llm_api.auth.settings import APIKeySettings, KeycloakSettings, LocalTokenSettings


class LlmApiSettings(ServiceSettings):
    service_name: str = "llm-api"
    db_schema: str = "llm_api"
    # When set, llm-api is the token issuer (local mode): it signs with this key and serves the JWKS.
    local_issuer_key_file: Path | None = None
    # Identity (apps/llm_api/auth): API-key rules, local session lifetimes, Keycloak guest sessions.
    api_keys: APIKeySettings = APIKeySettings()
    local_tokens: LocalTokenSettings = LocalTokenSettings()
    keycloak: KeycloakSettings | None = None
