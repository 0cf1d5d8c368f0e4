"""The settings base every app extends.

Settings come from the environment (or from keyword arguments in tests and in the local all-in-one
server). Secrets are `SecretStr` so they never show up in logs or reprs. Unknown keyword arguments are
rejected so a typo in code fails loudly; nested groups use `__` in environment names
(`AUTH__ISSUER`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseModel):
    """How bearer tokens are validated: one trusted issuer, its JWKS, and the expected audience."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = "http://127.0.0.1:8000"
    audience: str = "jan-api"
    jwks_url: str = "http://127.0.0.1:8000/.well-known/jwks.json"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    clock_skew_seconds: int = Field(60, ge=0, le=600)
    jwks_cache_seconds: int = Field(300, ge=1)
    # How other services check `sk_…` API keys: llm-api's internal validation endpoint.
    api_key_validation_url: str = "http://127.0.0.1:8080/internal/api-keys/validate"
    api_key_cache_seconds: float = Field(30.0, ge=0)
    internal_token: SecretStr | None = None


class AdmissionSettings(BaseModel):
    """How many requests an app works on at once (see `apps.common.admission`).

    Defaults from `bench/load.py` on the 2-core dev machine (see README, "Overload")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # Requests one app process works on at once, before their answer starts (a stream gives its slot
    # back once it streams). bench/load.py on the 2-core dev machine, knee ~400 req/s at 2-2.5 ms of
    # CPU each: 16 + 16 waiting served 1.4-1.8x the knee's rate at twice the knee with refusals at
    # p50 14 ms, where 32 + 64 let the queue grow (refusal p99 0.7-2.6 s).
    max_concurrent: int = Field(16, ge=1)
    # Per user: half the app, so a user flooding leaves the other half to everyone else.
    max_concurrent_per_user: int = Field(8, ge=1)
    max_waiting: int = Field(16, ge=0)
    # Requests inside the process at once, admitted or still queued for the CPU before admission;
    # past it, 503 at the door before any middleware runs (`Admission.door`).
    max_in_process: int = Field(256, ge=1)
    # With the standing queue served newest first, this is mostly how long the oldest waiters take to
    # be refused. bench/load.py, quiet dev machine, two alternated pairs at twice the knee: 25 against
    # 50 gave refusal p99 31-59 against 60-76 ms and admitted plain p99 1.17-1.41 against 1.44-1.80
    # times the knee's, at the same served rate.
    max_wait_ms: int = Field(25, ge=0, le=10_000)
    # How long an admitted request keeps its app slot (0: until it ends). One still running after it is
    # waiting on a model or a tool, at little CPU, and gives its slot to the next request; one that
    # ends sooner (a fast upstream, a short stream, CPU-heavy to relay) held a slot for its whole life,
    # so a flood of them stays bounded.
    slot_hold_ms: int = Field(250, ge=0, le=60_000)
    retry_after_seconds: int = Field(1, ge=1)
    # Refuse (503) while the event loop lags more than this: the process is out of CPU. 0: never. Off
    # by default: on a quiet machine bench/load.py did worse with it (25 ms: 464 of 800 req/s served
    # and refusal p99 683 ms; 50/100 ms likewise) than with the bounds above alone; the measurement
    # trails the queue it reacts to, so the door swings between open and shut.
    max_loop_lag_ms: int = Field(0, ge=0)


PlanCacheMode = Literal["auto", "force_generic_plan", "force_custom_plan"]


class ServiceSettings(BaseSettings):
    """Fields every app shares."""

    model_config = SettingsConfigDict(extra="forbid", env_nested_delimiter="__", frozen=True)

    service_name: str = "jan-service"
    environment: str = "local"
    version: str = "0.1.0"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    database_url: SecretStr | None = None
    db_schema: str = "public"
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    # Postgres `plan_cache_mode` of the app's connections (None: the server's). An app whose hot
    # statements are planned on every execution (a custom plan per parameter set) sets it to
    # `force_generic_plan`, so a prepared statement is planned once per connection.
    db_plan_cache_mode: PlanCacheMode | None = None
    otel_exporter_otlp_endpoint: str | None = None
    auth: AuthSettings = AuthSettings()
    admission: AdmissionSettings = AdmissionSettings()
    cors_origins: tuple[str, ...] = ("http://localhost", "http://localhost:3000", "http://127.0.0.1")
    # How long a write that backs a client's acknowledgement (a stored turn, a stored response) is
    # retried through a database outage before the client is told 503 (apps/common/durable.py).
    storage_retry_seconds: float = Field(10.0, gt=0)
    # Apps that mint snowflakes lease their worker id in Postgres for this long, renewing at a third.
    worker_lease_seconds: float = Field(30.0, ge=1.0, le=3600.0)
