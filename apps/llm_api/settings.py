"""Settings of llm-api."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from apps.common.settings import PlanCacheMode, ServiceSettings
from apps.llm_api.auth.settings import APIKeySettings, KeycloakSettings, LocalTokenSettings, OIDCSettings
from apps.llm_api.providers.catalog import Catalog

# Group-commit batches of acknowledged turns written at once (`services.persistence.TurnWriter`), each
# on a connection of its own.
TURN_FLUSHERS = 2
# Connections the process uses besides its admitted requests and the turn flushers: the background
# writer of unacknowledged turns, and one for what is never admitted and rarely runs (readiness, the
# other apps' API-key validation, the model sync, the worker lease); at the defaults the total is the
# 20 of the kit's 10 + 10, so Postgres budgets sized for those (the embedded server of local mode,
# the charts' replicas) hold as before.
UNADMITTED_CONNECTIONS = 2


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
    # Connections to model providers, per pool, and there are two: the aiohttp session (https://)
    # and PlainPool (http://). A provider is reached through one of them only, so it sees at most
    # this many.
    upstream_max_connections: int = Field(512, ge=1)
    upstream_keepalive_seconds: float = Field(4.0, ge=0)
    history_max_items: int = Field(50, ge=0)
    persistence_queue_size: int = Field(1000, ge=1)
    media_resolve_url: str | None = None
    media_resolve_timeout: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _size_pool(self) -> Self:
        """Size the database pool from what can be in flight, unless `DB_POOL_SIZE` /
        `DB_MAX_OVERFLOW` say otherwise.

        An admitted request holds at most one connection at a time (its history read, a lookup), a
        request waiting for admission none, and a stream past its slot none until its turn is
        committed, which the turn flushers do for every stream at once. So `max_concurrent` +
        `TURN_FLUSHERS` connections are kept (opened on first use, then reused), and the overflow is
        what is never admitted. With 10 kept and 10 overflow, a burst opened and closed an overflow
        connection per request past the tenth, each paying Postgres a backend start, its catalog
        caches and the hot statements' preparing and planning: `bench/closed_loop.py`'s conversation
        turns cost Postgres ~3 ms of CPU each that way, 0.5-0.65 ms with the pool sized so. Per
        process: a host or chart running several must fit their sum under Postgres'
        `max_connections` (tests/llm_api/test_pool_sizing.py checks local mode's defaults do).
        """
        if "db_pool_size" in self.model_fields_set:
            return self  # sized by hand: the overflow is the kit's unless set too
        object.__setattr__(self, "db_pool_size", self.admission.max_concurrent + TURN_FLUSHERS)
        if "db_max_overflow" not in self.model_fields_set:
            object.__setattr__(self, "db_max_overflow", UNADMITTED_CONNECTIONS)
        return self
