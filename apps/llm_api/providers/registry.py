"""Which providers exist, which models they serve, and which provider answers a given model id.

Providers come from three places, in this order of precedence (their *rank*): the providers file (in
file order), the environment provider (`DEFAULT_PROVIDER_URL`), then providers registered through the
admin API (in registration order). Each active provider's `GET {base_url}/models` is read at start and
every `model_sync_interval_seconds`; a provider whose sync fails keeps the models of its last good
sync, so a blip upstream does not make models vanish.

Selection is deterministic: a public model id maps to every active provider that serves it, and the
provider with the lowest rank wins. Everything here is in memory; a request never reads the database
to find its provider.

Aliases: every model also answers to its id without the `<vendor>/` part (`smollm2-135m-instruct` for
`local/smollm2-135m-instruct`). Why: the ids keep Jan's `<vendor>/<model>` contract, but clients that
read `x/` as a routing prefix of their own cannot send them. The OpenAI Agents SDK's default provider
raises "Unknown prefix: local" for `Agent(model="local/…")`, and LiteLLM-style clients split on `/` too.
An alias resolves like an id: of every active provider serving a model of that name, the lowest rank
wins. Aliases never contain `/`, ids always do, so the two can never collide. `/v1/models` lists each
model once, under its id, with the aliases that lead to it (`aliases`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from apps.llm_api.providers.catalog import ModelCatalog, catalog_entry, reported_context_length
from apps.llm_api.providers.compat import Compat, compat_for
from apps.llm_api.providers.config import (
    ProviderConfig,
    auth_headers,
    model_alias,
    provider_vendor,
    public_model_id,
    slug,
)
from apps.llm_api.types import ProviderSource

log = logging.getLogger(__name__)

SYNC_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    kind: str
    vendor: str
    base_url: str
    api_key: str | None = field(repr=False)
    active: bool
    source: ProviderSource
    rank: int
    only_models: tuple[str, ...] | None = None
    api_key_hint: str | None = None
    catalog: Mapping[str, ModelCatalog] = field(default_factory=dict, hash=False, compare=False)

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.kind, self.api_key)

    @property
    def compat(self) -> Compat:
        return compat_for(self.kind)

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    @classmethod
    def from_config(cls, config: ProviderConfig, *, source: ProviderSource, rank: int) -> Provider:
        return cls(
            id=f"prov_{slug(config.name)}",
            name=config.name,
            kind=config.kind,
            vendor=provider_vendor(config.kind, config.name, config.vendor),
            base_url=config.base_url,
            api_key=config.api_key,
            active=config.active,
            source=source,
            rank=rank,
            only_models=config.models,
            catalog=config.catalog,
        )


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One model as one provider serves it."""

    public_id: str
    upstream_id: str
    provider: Provider
    created: int
    reported_context: int | None = None  # the context length the provider's /models gave

    @property
    def catalog(self) -> ModelCatalog:
        return catalog_entry(self.provider.catalog, self.upstream_id, self.public_id, self.reported_context)


class ProviderRegistry:
    def __init__(self, client: httpx.AsyncClient, configured: list[Provider]) -> None:
        self._client = client
        self._configured = configured
        self._admin: list[Provider] = []
        self._routes_by_provider: dict[str, list[ModelRoute]] = {}
        self._index: dict[str, list[ModelRoute]] = {}
        self._aliases: dict[str, list[ModelRoute]] = {}
        self.last_synced_at: float | None = None

    @property
    def providers(self) -> list[Provider]:
        return sorted([*self._configured, *self._admin], key=lambda p: p.rank)

    def provider(self, provider_id: str) -> Provider | None:
        return next((p for p in self.providers if p.id == provider_id), None)

    def set_admin_providers(self, providers: list[Provider]) -> None:
        self._admin = providers

    def select(self, model: str) -> ModelRoute | None:
        """The route for a public id or an alias."""
        routes = self._index.get(model) or self._aliases.get(model)
        return routes[0] if routes else None

    def aliases_of(self, route: ModelRoute) -> list[str]:
        """The aliases that select `route` (none when a higher-ranked provider owns its bare name)."""
        alias = model_alias(route.public_id)
        routes = self._aliases.get(alias)
        return [alias] if routes and routes[0] is route else []

    def models(self) -> list[ModelRoute]:
        """One route per public id (the one `select` picks), sorted by id."""
        return [routes[0] for _, routes in sorted(self._index.items())]

    def models_of(self, provider_id: str) -> list[ModelRoute]:
        return list(self._routes_by_provider.get(provider_id, []))

    async def sync(self) -> None:
        active = [p for p in self.providers if p.active]
        results = await asyncio.gather(*(self._fetch_models(p) for p in active))
        known = {p.id for p in active}
        routes = {pid: r for pid, r in self._routes_by_provider.items() if pid in known}
        for provider, fetched in zip(active, results, strict=True):
            if fetched is not None:
                routes[provider.id] = fetched
            elif provider.id in routes:  # keep the last good list, but with the provider as it is now
                routes[provider.id] = [
                    ModelRoute(r.public_id, r.upstream_id, provider, r.created, r.reported_context)
                    for r in routes[provider.id]
                ]
        self._routes_by_provider = routes
        self._rebuild()
        self.last_synced_at = time.time()

    def _rebuild(self) -> None:
        index: dict[str, list[ModelRoute]] = {}
        aliases: dict[str, list[ModelRoute]] = {}
        for provider in self.providers:
            if not provider.active:
                continue
            for route in self._routes_by_provider.get(provider.id, []):
                index.setdefault(route.public_id, []).append(route)
                aliases.setdefault(model_alias(route.public_id), []).append(route)
        self._index = index
        self._aliases = aliases

    async def _fetch_models(self, provider: Provider) -> list[ModelRoute] | None:
        try:
            response = await self._client.get(
                f"{provider.base_url}/models", headers=provider.headers, timeout=SYNC_TIMEOUT_SECONDS
            )
            response.raise_for_status()
            data = response.json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("model sync failed", extra={"provider": provider.name, "error": str(exc)})
            return None
        now = int(time.time())
        routes: list[ModelRoute] = []
        for entry in data:
            upstream_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(upstream_id, str) or not upstream_id:
                continue
            if provider.only_models is not None and upstream_id not in provider.only_models:
                continue
            created = entry.get("created")
            routes.append(
                ModelRoute(
                    public_id=public_model_id(provider.vendor, upstream_id),
                    upstream_id=upstream_id,
                    provider=provider,
                    created=created if isinstance(created, int) else now,
                    reported_context=reported_context_length(entry),
                )
            )
        return routes
