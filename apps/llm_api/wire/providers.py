"""Admin wire shapes for providers (our own resource: strict, unknown fields refused)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.llm_api.providers.catalog import Catalog, catalog_json
from apps.llm_api.providers.config import known_kind
from apps.llm_api.providers.registry import Provider, ProviderRegistry
from apps.llm_api.types import Provider as ProviderObject


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    kind: str = "openai_compatible"
    base_url: str = Field(pattern=r"^https?://", max_length=512)
    api_key: str | None = Field(None, max_length=4096)
    vendor: str | None = Field(None, max_length=64)
    active: bool = True
    catalog: Catalog | None = Field(None, description="Model catalog metadata by upstream model id or '*'")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return known_kind(value)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return value.rstrip("/")


class ProviderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    base_url: str | None = Field(None, pattern=r"^https?://", max_length=512)
    api_key: str | None = Field(None, max_length=4096, description='"" removes the key')
    vendor: str | None = Field(None, max_length=64)
    active: bool | None = None
    catalog: Catalog | None = Field(None, description="Replaces the provider's whole catalog")


def provider_json(provider: Provider, registry: ProviderRegistry) -> ProviderObject:
    return {
        "id": provider.id,
        "object": "provider",
        "name": provider.name,
        "kind": provider.kind,
        "vendor": provider.vendor,
        "base_url": provider.base_url,
        "active": provider.active,
        "source": provider.source,
        "api_key_hint": provider.api_key_hint,
        "models": [route.public_id for route in registry.models_of(provider.id)],
        "catalog": {key: catalog_json(entry) for key, entry in provider.catalog.items()},
    }
