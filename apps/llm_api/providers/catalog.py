"""Catalog metadata of a model: context length, output limit and capabilities, beside OpenAI's fields.

Where it comes from: the provider's definition (`catalog:` in the providers file, `catalog` in the
admin API's provider body, `DEFAULT_PROVIDER_CATALOG` for the environment provider), keyed by the
upstream model id (what the provider's `/models` lists), by the public id, or `"*"` for every model
of the provider; the most specific key wins, whole (entries are not merged). A context length the
provider's own `/models` reports (vLLM's `max_model_len`, OpenRouter's `context_length`) fills in
when the catalog does not give one. A capability nobody declared is `false`: clients should read
`false` as "not declared", not as a promise that the model cannot do it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, cast

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from apps.llm_api.types import CatalogEntry

DEFAULT_KEY = "*"


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: StrictBool = False
    vision: StrictBool = False
    reasoning: StrictBool = False


class ModelCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    context_length: StrictInt | None = Field(None, gt=0, le=100_000_000)
    max_output_tokens: StrictInt | None = Field(None, gt=0, le=100_000_000)
    capabilities: Capabilities = Capabilities()
    description: StrictStr | None = Field(None, max_length=1000)


Catalog = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=255)], ModelCatalog], Field(max_length=1000)
]


def catalog_json(entry: ModelCatalog) -> CatalogEntry:
    """The entry as models and providers show it (`types.CatalogEntry` names the same fields)."""
    return cast(CatalogEntry, entry.model_dump())


def catalog_entry(
    catalog: Mapping[str, ModelCatalog], upstream_id: str, public_id: str, reported_context: int | None
) -> ModelCatalog:
    """The entry that describes one model, with the provider's reported context length as fallback."""
    entry = catalog.get(upstream_id) or catalog.get(public_id) or catalog.get(DEFAULT_KEY) or ModelCatalog()
    if entry.context_length is None and reported_context is not None:
        entry = entry.model_copy(update={"context_length": reported_context})
    return entry


def reported_context_length(listing: dict[str, Any]) -> int | None:
    """The context length a provider's `/models` entry reports, under the names providers use."""
    for key in ("max_model_len", "context_length", "context_window"):
        value = listing.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
