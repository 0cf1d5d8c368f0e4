"""The stack config model: every `jan-server:*` key of a stack file, typed and validated once.

Decisions:
- Stack files hold structured values (`cluster:`, `gpuPools:` …) under the project namespace; Pulumi's
  project file can type only scalars and arrays of scalars, so `Pulumi.yaml` declares every key with
  its description (and a type where Pulumi has one) and this model does the real validation. Both the
  `Pulumi.yaml` declarations and the README's config reference are generated from this model
  (`infra/docs.py`), and a test fails when they drift.
- Unknown keys are errors at every level (`extra="forbid"`), so a typo fails the preview instead of
  silently falling back to a default.
- Errors name the key the way `pulumi config set --path` spells it (`gpuPools[0].maxSize`), including
  the cross-field rules, which raise `RuleError(key, …)`.
- The cluster's part of the model (cluster, node groups, GPU pools, network) is `infra.cluster_config`,
  the services' is `infra.service_config`.
- What differs per environment without being a choice (multi-AZ RDS, NAT per AZ, flow logs, deletion
  protection, bucket versioning) follows `environment` in the components instead of being a knob.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from infra import connections
from infra.capacity import check as check_capacity
from infra.cluster_config import ClusterConfig, ClusterMode, GpuPool, NetworkConfig
from infra.config_errors import describe, report
from infra.service_config import (
    AutoscalingConfig,
    ConfigModel,
    ExternalUpstream,
    GatewayConfig,
    IdentityConfig,
    ModelConfig,
    RuleError,
)
from infra.versions import CLUSTER_AUTOSCALER, FLOATING_TAGS

PROJECT = "jan-server"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_GATEWAY_URL = "http://localhost:8000"  # Kong through `kubectl port-forward ... 8000:80`


class Environment(StrEnum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class DatabaseMode(StrEnum):
    RDS = "rds"
    IN_CLUSTER = "in-cluster"


class ObjectStoreMode(StrEnum):
    S3 = "s3"
    IN_CLUSTER = "in-cluster"


class ConfigError(ValueError):
    """The stack config is invalid; the message has one `key: problem` line per error."""


class DatabaseConfig(ConfigModel):
    """Postgres for the four apps: RDS, or the in-cluster server behind the same interface."""

    mode: DatabaseMode = Field(description="`rds` (needs cluster.mode eks) or `in-cluster`.")
    engine_version: str = Field(
        "17", pattern=r"^\d{2}(\.\d+)?$", description="Postgres major (or major.minor)."
    )
    instance_class: str = Field("db.t4g.medium", pattern=r"^db\.", description="`rds` only: instance class.")
    storage_gib: int = Field(50, ge=1, le=65536, description="Allocated storage in GiB (rds: at least 20).")
    max_storage_gib: int = Field(200, ge=20, le=65536, description="`rds` only: storage autoscaling ceiling.")
    backup_retention_days: int = Field(7, ge=1, le=35, description="`rds` only: days of backups and PITR.")
    max_connections: int = Field(
        200,
        ge=25,
        le=5000,
        description="`in-cluster` only: Postgres' max_connections; the apps' pools are sized to fit it "
        "(rds: from the instance class's memory).",
    )

    @model_validator(mode="after")
    def _storage(self) -> Self:
        if self.mode is DatabaseMode.RDS and self.storage_gib < 20:
            raise RuleError("storageGib", "rds needs at least 20")
        if self.max_storage_gib < self.storage_gib:
            raise RuleError("maxStorageGib", "must be at least storageGib")
        return self


class ObjectStoreConfig(ConfigModel):
    """The media bucket: S3 with Pod Identity, or the in-cluster S3-compatible store."""

    mode: ObjectStoreMode = Field(description="`s3` (needs cluster.mode eks) or `in-cluster`.")
    abandoned_upload_days: int = Field(
        7, ge=1, le=365, description="Days after which unfinished multipart uploads are aborted."
    )


class InferenceConfig(ConfigModel):
    """Model serving: vLLM per model on GPU pools, or (cpu) the llama.cpp dev server or an external API."""

    accelerator: Literal["cpu", "gpu"] = Field(description="`cpu`, or `gpu` (needs gpuPools).")
    models: list[ModelConfig] = Field([], description="`gpu` only: the models vLLM serves.")
    autoscaling: AutoscalingConfig = Field(AutoscalingConfig(), description="`gpu` only: KEDA scaling.")
    hf_token_secret: str | None = Field(
        None, description="Secret in the inference namespace with a Hugging Face token under `token`."
    )
    external_upstream: ExternalUpstream | None = Field(
        None, description="`cpu` only: use this API instead of the in-cluster CPU model server."
    )

    @model_validator(mode="after")
    def _per_accelerator(self) -> Self:
        if self.accelerator == "gpu":
            if not self.models:
                raise RuleError("models", "gpu needs at least one model")
            if self.external_upstream is not None:
                raise RuleError("externalUpstream", "applies only when accelerator is cpu")
        else:
            for key, set_ in (("models", self.models), ("autoscaling", self.autoscaling.enabled)):
                if set_:
                    raise RuleError(key, "applies only when accelerator is gpu")
        names = [model.model for model in self.models]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise RuleError(f"models[{index}].model", f"duplicate model {name!r}")
        return self


class ReleaseConfig(ConfigModel):
    """The release the stack deploys: the one image the four apps run from, at a fixed tag."""

    image_repository: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$",
        description="Image repository without a tag (`ghcr.io/janhq/jan-server`); required off AWS. On AWS "
        "leave it unset: the stack pulls from the ECR repository the registry project creates.",
    )
    image_tag: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
        description="Image tag of this release: the repository version the workflow pushed (`0.1.0`); "
        "never `latest` or another floating tag.",
    )

    @field_validator("image_tag")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.lower() in FLOATING_TAGS:
            raise ValueError(f"{value!r} is a floating tag; use the release version")
        return value

    @field_validator("image_repository")
    @classmethod
    def _no_tag(cls, value: str | None) -> str | None:
        if value is not None and ":" in value.rsplit("/", 1)[-1]:
            raise ValueError("give the repository without a tag (the tag is imageTag)")
        return value


class StackConfig(ConfigModel):
    """Everything a stack file says about the platform."""

    environment: Environment = Field(
        description="`dev`, `staging` or `prod`; tags, names and safety settings."
    )
    owner: str = Field(min_length=1, description="Team or person responsible; the `owner` tag on everything.")
    domain: str = Field(
        pattern=r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$",
        description="Public DNS domain; the gateway answers on `api.<domain>`, Keycloak on `auth.<domain>`.",
    )
    region: str | None = Field(
        None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
        description="AWS region of every AWS resource; required when cluster.mode is eks.",
    )
    cluster: ClusterConfig = Field(description="The Kubernetes cluster.")
    network: NetworkConfig = Field(NetworkConfig(), description="`eks` only: the VPC.")
    gpu_pools: list[GpuPool] = Field([], description="`eks` only: GPU managed node groups.")
    database: DatabaseConfig = Field(description="Postgres for the apps.")
    object_store: ObjectStoreConfig = Field(description="The media bucket.")
    inference: InferenceConfig = Field(description="Model serving.")
    gateway: GatewayConfig = Field(GatewayConfig(), description="Kong, the public entry.")
    identity: IdentityConfig = Field(IdentityConfig(), description="Keycloak and its realm.")
    release: ReleaseConfig = Field(description="The apps' image and the tag this stack runs.")

    @field_validator("region", mode="before")
    @classmethod
    def _unset_region(cls, value: object) -> object:
        return None if value == "" else value  # Pulumi.yaml's default for "no region"

    @property
    def on_aws(self) -> bool:
        return self.cluster.mode is ClusterMode.EKS

    @property
    def gateway_origin(self) -> str:
        return f"https://api.{self.domain}"

    @property
    def gateway_url(self) -> str:
        """Where browsers and clients reach the API: `gateway_origin` on AWS; off AWS (dev), Kong
        through `kubectl port-forward` (README, "Platform"), since nothing serves `api.<domain>`."""
        return self.gateway_origin if self.on_aws else DEV_GATEWAY_URL

    @property
    def identity_url(self) -> str:
        return self.identity.public_url or f"https://auth.{self.domain}"

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if not self.on_aws:
            aws_only = {
                "network": self.network != NetworkConfig(),
                "gpuPools": self.gpu_pools,
                "region": self.region,
            }
            for key, value in aws_only.items():
                if value:
                    raise RuleError(key, 'needs cluster.mode "eks" (GPU pools, VPC and region are AWS-only)')
            if self.database.mode is DatabaseMode.RDS:
                raise RuleError("database.mode", 'rds needs cluster.mode "eks"')
            if self.object_store.mode is ObjectStoreMode.S3:
                raise RuleError("objectStore.mode", 's3 needs cluster.mode "eks"')
            if self.release.image_repository is None:
                raise RuleError("release.imageRepository", 'is required unless cluster.mode is "eks"')
        elif self.region is None:
            raise RuleError("region", 'is required when cluster.mode is "eks"')
        elif self.cluster.kubernetes_version not in CLUSTER_AUTOSCALER:
            raise RuleError(
                "cluster.kubernetesVersion",
                f"eks stacks run the cluster autoscaler at the cluster's minor; one is pinned for "
                f"{', '.join(CLUSTER_AUTOSCALER)} (infra/versions.py)",
            )
        elif self.release.image_repository is not None:
            raise RuleError("release.imageRepository", 'the program\'s ECR repository is used on "eks"')
        names = [pool.name for pool in self.gpu_pools]
        for index, name in enumerate(names):
            if names.index(name) != index:
                raise RuleError(f"gpuPools[{index}].name", f"duplicate pool name {name!r}")
        if self.inference.accelerator == "gpu" and not self.gpu_pools:
            raise RuleError("inference.accelerator", "gpu needs at least one entry in gpuPools")
        for index, model in enumerate(self.inference.models):
            if model.pool not in names:
                raise RuleError(f"inference.models[{index}].pool", f"no gpuPools entry named {model.pool!r}")
        if self.gateway.certificate_arn and not self.on_aws:
            raise RuleError("gateway.certificateArn", 'needs cluster.mode "eks"')
        self._certificate_rules()
        if self.environment is Environment.PROD and self.database.backup_retention_days < 7:
            raise RuleError("database.backupRetentionDays", "must be at least 7 in prod")
        return self

    def _certificate_rules(self) -> None:
        """An NLB listener with an ACM certificate that is never issued never serves: stop before any
        `pulumi up` unless the program can validate the certificate itself (a Route 53 zone)."""
        zone = self.gateway.hosted_zone
        if zone and not self.on_aws:
            raise RuleError("gateway.hostedZone", 'needs cluster.mode "eks"')
        if not self.on_aws or self.gateway.certificate_arn:
            return
        if zone is None:
            hosts = f"api.{self.domain} and auth.{self.domain}"
            raise RuleError(
                "gateway.hostedZone",
                f"is required on eks unless gateway.certificateArn is set: the program requests an ACM "
                f"certificate for {hosts}, which ACM issues only once one DNS validation record per name "
                f"exists (a CNAME `_<token>.api.{self.domain}` and one `_<token>.auth.{self.domain}`, "
                "names and values as ACM lists them). Set it to the Route 53 zone of "
                f"{self.domain} and the program creates them; otherwise request a certificate for "
                f"{hosts}, create those two CNAMEs in your DNS, and set gateway.certificateArn once ACM "
                "shows it Issued.",
            )
        if self.domain != zone and not self.domain.endswith(f".{zone}"):
            raise RuleError("gateway.hostedZone", f"{zone!r} is not {self.domain!r} nor a parent of it")


def parse(values: Mapping[str, Any]) -> StackConfig:
    """Validate `jan-server:*` config values (plain or JSON-encoded, as Pulumi passes them)."""
    prefix = f"{PROJECT}:"
    raw: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith(prefix):
            raw[key.removeprefix(prefix)] = _decode(value)
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe(exc, PROJECT)) from None
    problems = check_capacity(config) + connections.check(config)
    if problems:
        raise ConfigError(report(f"{PROJECT}:{problem}" for problem in problems))
    return config


def load_stack_file(path: Path) -> StackConfig:
    """Parse a stack file (`Pulumi.<stack>.yaml`) the way `pulumi up` sees it."""
    return parse(stack_values(path))


def stack_values(path: Path) -> dict[str, Any]:
    """A stack file's config over the defaults `Pulumi.yaml` declares, as the Pulumi CLI merges them."""
    document = yaml.safe_load(path.read_text()) or {}
    if not isinstance(document, dict) or not isinstance(document.get("config") or {}, dict):
        raise ConfigError(f"{path}: expected a mapping with a `config:` mapping")
    return {**project_defaults(), **(document.get("config") or {})}


def project_defaults() -> dict[str, Any]:
    declared = (yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text()) or {}).get("config") or {}
    return {
        f"{PROJECT}:{key}": entry["default"]
        for key, entry in declared.items()
        if isinstance(entry, dict) and "default" in entry
    }


def load_from_pulumi() -> StackConfig:
    """Parse the running stack's config (inside `pulumi up` / `preview`, or under the render's mocks).

    Read through Pulumi's public `pulumi.Config`, one top-level key of the model at a time: Pulumi
    has no public listing of a stack's keys, so a misspelt top-level key is not seen here; the stack
    files' tests and `jan-server render` (which parse the file itself) are what catch it.
    """
    import pulumi  # noqa: PLC0415 - keeps pulumi out of doc/test imports

    stack = pulumi.Config(PROJECT)
    keys = [field.alias or name for name, field in StackConfig.model_fields.items()]
    return parse({f"{PROJECT}:{key}": value for key in keys if (value := stack.get(key)) is not None})


def stack_file(stack: str) -> Path:
    """`dev` lives at the root (`pulumi up -s dev`), the others under stacks/ (`--config-file`)."""
    if stack == "dev":
        return REPO_ROOT / "Pulumi.dev.yaml"
    return REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml"


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
