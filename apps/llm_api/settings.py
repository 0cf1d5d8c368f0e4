"""Settings of llm-api."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from apps.common.settings import PlanCacheMode, ServiceSettings
from apps.llm_api.auth.settings import APIKeySettings, KeycloakSettings, LocalTokenSettings, OIDCSettings
from apps.llm_api.providers.catalog import Catalog


class LlmApiSettings(ServiceSettings):
    service_name: str = "llm-api"
    db_schema: str = "llm_api"
    # A conversation turn's two statements (`services/turn_store.py`) cost Postgres more to plan
    # than to run: with a plan per execution, ~1 ms of server CPU per turn of a 50-item history; with
    # the generic plan, half that. llm-api's other statements are key lookups and keyset pages, for
    # which the generic plan is the custom one.
    db_plan_cache_mode: PlanCacheMode | None = "force_generic_plan"
    # When set, llm-api is the token issuer (local mode): it signs with this key and serves the JWKS.
    local_issuer_key_file: Path | None = None
    # Identity (apps/llm_api/auth): API-key rules, local session lifetimes, Keycloak guest sessions.
    api_keys: APIKeySettings = APIKeySettings()
    local_tokens: LocalTokenSettings = LocalTokenSettings()
    keycloak: KeycloakSettings | None = None
    # Browser login (`/v1/auth/login`): the identity provider's OpenID Connect client settings.
    oidc: OIDCSettings | None = None

    # Chat completions: providers, upstream calls, persistence, media (see apps/llm_api/providers).
    providers_file: Path | None = None
    # One OpenAI-compatible upstream from the environment, used alongside (or instead of) the file.
    default_provider_url: str | None = None
    default_provider_api_key: SecretStr | None = None
    default_provider_kind: str = "vllm"
    default_provider_name: str = "local"
    # Its models' catalog metadata (JSON in DEFAULT_PROVIDER_CATALOG; see providers/catalog.py).
    default_provider_catalog: Catalog = Field(default_factory=dict)
    # Key material for provider API keys stored in the database (AES-256-GCM). No default: without
    # it, providers registered through the admin API cannot carry an API key.
    model_provider_secret: SecretStr | None = None
    model_sync_interval_seconds: float = Field(600.0, ge=0)  # 0 turns the periodic sync off
    upstream_connect_timeout: float = Field(5.0, gt=0)
    # The longest silence allowed between two bytes from the upstream (a model may think for minutes).
    upstream_read_timeout: float = Field(300.0, gt=0)
    upstream_max_connections: int = Field(512, ge=1)
    upstream_keepalive_seconds: float = Field(4.0, ge=0)
    history_max_items: int = Field(50, ge=0)
    persistence_queue_size: int = Field(1000, ge=1)
    media_resolve_url: str | None = None
    media_resolve_timeout: float = Field(5.0, gt=0)
