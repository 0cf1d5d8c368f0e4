"""The providers file and the environment provider, validated once at start.

File format (YAML, `${NAME}` and `${NAME:-default}` expanded from the environment in every string):

    providers:
      - name: local-vllm            # unique; also the vendor of its models unless `vendor` is set
        kind: vllm                  # vllm | openai_compatible | openai | anthropic | azure_openai | …
        base_url: http://vllm:8000/v1
        api_key: ${VLLM_API_KEY}    # optional; "" or "none" sends no key
        vendor: jan                 # optional: the `<vendor>/` part of public model ids
        active: true
        models: [jan-v1-4b]         # optional: only these upstream ids (default: all from /models)
        catalog:                    # optional: what /v1/models/{id} tells clients (see catalog.py)
          jan-v1-4b: {context_length: 32768, capabilities: {tools: true, reasoning: true}}
          "*": {context_length: 8192}

Any error (unknown key, wrong type, missing variable, duplicate name) stops start-up with a message
naming the file and the offending entry. Keys from the file or the environment stay in memory only;
keys registered through the admin API are stored encrypted (see `crypto.py`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apps.llm_api.providers.catalog import Catalog

# Hosted kinds are their own vendor; self-hosted kinds take the provider's name as vendor.
HOSTED_KINDS = frozenset(
    {
        "openai",
        "anthropic",
        "azure_openai",
        "openrouter",
        "groq",
        "mistral",
        "together",
        "deepinfra",
        "gemini",
        "perplexity",
        "cohere",
        "fireworks",
    }
)
# `llama_cpp_python`: llama-cpp-python's server (local mode's model), whose gaps `compat.py` covers.
SELF_HOSTED_KINDS = frozenset({"vllm", "openai_compatible", "llamacpp", "llama_cpp_python", "ollama", "jan"})
KINDS = HOSTED_KINDS | SELF_HOSTED_KINDS

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SLUG = re.compile(r"[^a-z0-9._-]+")


class ProvidersFileError(ValueError):
    """The providers file cannot be used; the message says where and why."""


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    kind: str = "openai_compatible"
    base_url: str = Field(pattern=r"^https?://")
    api_key: str | None = None
    vendor: str | None = Field(None, max_length=64)
    active: bool = True
    models: tuple[str, ...] | None = None
    catalog: Catalog = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        return known_kind(value)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def effective_vendor(self) -> str:
        return provider_vendor(self.kind, self.name, self.vendor)


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: tuple[ProviderConfig, ...] = ()

    @field_validator("providers")
    @classmethod
    def _unique_names(cls, value: tuple[ProviderConfig, ...]) -> tuple[ProviderConfig, ...]:
        seen: set[str] = set()
        for provider in value:
            if provider.name in seen:
                raise ValueError(f"provider name '{provider.name}' is used twice")
            seen.add(provider.name)
        return value


def known_kind(value: str) -> str:
    """The canonical kind name (`OpenAI` → `openai`, `custom` → `openai_compatible`), or a ValueError."""
    kind = value.strip().lower().replace("-", "_")
    if kind == "custom":
        return "openai_compatible"
    if kind not in KINDS:
        raise ValueError(f"unknown provider kind '{value}' (known: {', '.join(sorted(KINDS))})")
    return kind


def provider_vendor(kind: str, name: str, vendor: str | None) -> str:
    if vendor:
        return slug(vendor)
    return kind if kind in HOSTED_KINDS else slug(name)


def slug(text: str) -> str:
    return _SLUG.sub("-", text.strip().lower()).strip("-") or "model"


def public_model_id(vendor: str, upstream_id: str) -> str:
    """`<vendor>/<model>`: stable for a given provider vendor and upstream model id.

    An upstream id that already names its owner (`meta-llama/Llama-3-8B`) keeps it and only gets
    lower-cased; `models/` prefixes (Gemini) are dropped; anything else is put under the vendor.
    """
    model = upstream_id.strip()
    model = model.removeprefix("models/")
    if "/" in model:
        owner, _, rest = model.partition("/")
        return f"{slug(owner)}/{slug(rest.replace('/', '-'))}"
    return f"{vendor}/{slug(model)}"


def model_alias(public_id: str) -> str:
    """A public id without its `<vendor>/` part: `local/smollm2-135m-instruct` → `smollm2-135m-instruct`."""
    return public_id.partition("/")[2] or public_id


def auth_headers(kind: str, api_key: str | None) -> dict[str, str]:
    """The upstream's authentication headers for its kind."""
    if not api_key or api_key.strip().lower() == "none":
        return {}
    if kind == "azure_openai":
        return {"api-key": api_key}
    if kind == "anthropic":
        return {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {api_key}"}


def expand_env(value: Any, where: str, environ: dict[str, str]) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise ProvidersFileError(f"{where}: environment variable '{name}' is not set")

        return _ENV_REF.sub(replace, value)
    if isinstance(value, list):
        return [expand_env(item, f"{where}[{i}]", environ) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: expand_env(item, f"{where}.{key}", environ) for key, item in value.items()}
    return value


def load_providers_file(path: Path, environ: dict[str, str] | None = None) -> ProvidersFile:
    environ = dict(os.environ) if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProvidersFileError(f"providers file {path}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ProvidersFileError(f"providers file {path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ProvidersFileError(f"providers file {path}: expected a mapping with a 'providers' list")
    try:
        return ProvidersFile.model_validate(expand_env(raw, str(path), environ))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ProvidersFileError(f"providers file {path}: {problems}") from None
