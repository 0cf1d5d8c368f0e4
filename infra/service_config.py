"""Stack config of the services that run on the cluster: gateway, identity, models, observability.

Part of the stack config model (`infra.config.StackConfig` has one key per model here); kept apart so
the foundation's model stays readable. Same rules: unknown keys are errors, cross-field rules raise
`RuleError` with the key as `pulumi config set --path` spells it. Decisions:
- The model list is config, not code: each entry names its GPU pool, so a stack decides where a model
  runs; the pool must exist (checked in `StackConfig`). A CPU stack lists no models: it runs the
  llama.cpp dev server, or an external OpenAI-compatible upstream when `externalUpstream` is set.
- Secrets never appear in the stack's plain config: the Hugging Face token and the external upstream's
  key are named Secrets created out of band (`kubectl create secret`), everything the program can
  generate (client secrets, API keys, admin passwords) comes from pulumi-random.
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel


class RuleError(ValueError):
    """A cross-field rule failed; `key` is relative to the model that raised it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class ConfigModel(BaseModel):
    """The base of every model of the stack config (this module's, `infra.cluster_config`'s and
    `infra.config`'s): frozen, keys camelCase as in the stack file, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def each_matches(values: list[str], pattern: str, problem: str) -> list[str]:
    """`values` when each matches `pattern` whole; else a `ValueError` naming the first that does not
    (`'<value>' <problem>`)."""
    for value in values:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} {problem}")
    return values


class GatewayConfig(ConfigModel):
    """Kong, the single public entry."""

    replicas: int = Field(2, ge=1, le=20, description="Kong proxy replicas.")
    cors_origins: list[str] = Field(
        [], description="Browser origins allowed by CORS (`https://app.example.com`); none: no CORS."
    )
    certificate_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+$",
        description="`eks` only: an existing, issued ACM certificate for the proxy's TLS listener; "
        "unset: the program requests one for `api.<domain>` and `auth.<domain>` and validates it "
        "through `hostedZone`.",
    )
    hosted_zone: str | None = Field(
        None,
        pattern=r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$",
        description="`eks` only: the public Route 53 zone (`example.com`, the domain or a parent) in "
        "which the program writes the certificate's DNS validation records; the NLB listeners wait "
        "until ACM issues it. Required on `eks` unless `certificateArn` is set.",
    )

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return each_matches(value, r"https?://[^/\s*]+", "must be scheme://host[:port] (no path, no '*')")


class IdentityConfig(ConfigModel):
    """Keycloak 26 and the realm it imports at start."""

    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+$",
        description="URL browsers reach Keycloak on (the tokens' issuer origin); default "
        "`https://auth.<domain>`.",
    )
    replicas: int = Field(1, ge=1, le=5, description="Keycloak replicas.")
    database_secret: str = Field(
        "keycloak-database",
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="Secret in the identity namespace with `host`, `port`, `database`, `username`, "
        "`password` of Keycloak's own database (written by the program from the stack's Postgres).",
    )
    access_token_seconds: int = Field(300, ge=60, le=86400, description="Access token lifetime.")
    session_idle_seconds: int = Field(
        86400, ge=300, description="SSO session idle timeout (bounds refresh tokens)."
    )
    session_max_seconds: int = Field(2592000, ge=300, description="SSO session maximum lifetime.")
    redirect_uris: list[str] = Field(
        [], description="Redirect URIs of the public client (absolute URLs, no wildcard host)."
    )
    registration_allowed: bool = Field(True, description="Users may register themselves.")
    login_redirects: list[str] = Field(
        [],
        description="Exact URLs a finished browser login (`/v1/auth/login`) may send the browser to, "
        "e.g. the web app's sign-in landing page; without one the login answers its tokens as JSON.",
    )

    @field_validator("redirect_uris", "login_redirects")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        return each_matches(
            value, r"https?://[^/\s*]+(/\S*)?", "must be an absolute http(s) URL without a wildcard host"
        )

    @model_validator(mode="after")
    def _sessions(self) -> Self:
        if self.session_idle_seconds > self.session_max_seconds:
            raise RuleError("sessionIdleSeconds", "cannot exceed sessionMaxSeconds")
        return self


class ModelConfig(ConfigModel):
    """One model served by vLLM on a GPU pool."""

    model: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="Hugging Face repository id.")
    pool: str = Field(description="The `gpuPools` entry it runs on.")
    gpus: int = Field(1, ge=1, le=8, description="GPUs per replica (tensor parallel size).")
    max_context: int = Field(8192, ge=512, description="`--max-model-len`.")
    replicas: int = Field(1, ge=0, le=50, description="Replicas (the initial count under autoscaling).")
    extra_args: list[str] = Field([], description="More `vllm serve` flags (not the managed ones).")
    weights_gib: float = Field(16, gt=0, description="Size of the weights (sizes the cache volume).")


class AutoscalingConfig(ConfigModel):
    """KEDA scaling of each model on its vLLM request queue."""

    enabled: bool = Field(False, description="Install KEDA and scale every model on queue depth.")
    min_replicas: int = Field(1, ge=0, description="Fewest replicas per model.")
    max_replicas: int = Field(4, ge=1, description="Most replicas per model.")
    waiting_per_replica: int = Field(5, ge=1, description="Queued requests one replica absorbs.")

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise RuleError("minReplicas", "cannot exceed maxReplicas")
        return self


class ExternalUpstream(ConfigModel):
    """An OpenAI-compatible API llm-api uses instead of an in-cluster model server."""

    base_url: str = Field(pattern=r"^https://[^\s]+/v1$", description="Base URL ending in `/v1`.")
    api_key_secret: str = Field(description="Secret in the apps namespace with the key under `api-key`.")
