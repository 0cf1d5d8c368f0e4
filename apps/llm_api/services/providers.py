"""Providers registered through the admin API: stored in Postgres with their keys sealed.

Changes reload the registry at once (this replica) and on the next periodic sync (other replicas).
A provider's model catalog (`catalog`, see `providers/catalog.py`) is kept in its `metadata` column;
an update replaces it whole. Providers from the file or the environment are read-only here: they are
changed where they are defined, so a restart never undoes an admin's edit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.errors import APIError
from apps.common.ids import random_id
from apps.llm_api.chat_tables import ProviderRow
from apps.llm_api.providers.catalog import ModelCatalog
from apps.llm_api.providers.config import provider_vendor
from apps.llm_api.providers.crypto import KeyBox, key_hint
from apps.llm_api.providers.registry import Provider, ProviderRegistry
from apps.llm_api.wire.providers import ProviderCreate, ProviderUpdate

ADMIN_RANK_BASE = 1_000_000


class ProviderAdmin:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], keybox: KeyBox, registry: ProviderRegistry
    ) -> None:
        self._sessions = sessions
        self._keybox = keybox
        self._registry = registry

    async def reload(self) -> None:
        async with self._sessions() as session:
            rows = (await session.scalars(select(ProviderRow).order_by(ProviderRow.id))).all()
        self._registry.set_admin_providers([self._provider(row) for row in rows])
        await self._registry.sync()

    async def create(self, body: ProviderCreate) -> Provider:
        self._check_name_free(body.name)
        async with self._sessions() as session, session.begin():
            if await self._by_name(session, body.name) is not None:
                raise APIError(409, f"A provider named '{body.name}' exists.", param="name", code="conflict")
            row = ProviderRow(
                public_id=random_id("prov", 16),
                name=body.name,
                kind=body.kind,
                vendor=body.vendor,
                base_url=body.base_url,
                active=body.active,
                metadata_=_with_catalog({}, body.catalog),
            )
            self._set_key(row, body.api_key)
            session.add(row)
        await self.reload()
        return self._registered(row.public_id)

    async def update(self, provider_id: str, body: ProviderUpdate) -> Provider:
        self._check_editable(provider_id)
        async with self._sessions() as session, session.begin():
            row = await _stored_row(session, provider_id)
            if body.name is not None and body.name != row.name:
                self._check_name_free(body.name)
                if await self._by_name(session, body.name) is not None:
                    raise APIError(
                        409, f"A provider named '{body.name}' exists.", param="name", code="conflict"
                    )
                row.name = body.name
            for field in ("base_url", "vendor", "active"):
                value = getattr(body, field)
                if value is not None:
                    setattr(row, field, value)
            if body.api_key is not None:
                self._set_key(row, body.api_key or None)
            if body.catalog is not None:
                row.metadata_ = _with_catalog(row.metadata_ or {}, body.catalog)
        await self.reload()
        return self._registered(provider_id)

    async def delete(self, provider_id: str) -> None:
        self._check_editable(provider_id)
        async with self._sessions() as session, session.begin():
            row = await _stored_row(session, provider_id)
            await session.delete(row)
        await self.reload()

    def _provider(self, row: ProviderRow) -> Provider:
        return Provider(
            id=row.public_id,
            name=row.name,
            kind=row.kind,
            vendor=provider_vendor(row.kind, row.name, row.vendor),
            base_url=row.base_url,
            api_key=self._keybox.open(row.encrypted_api_key) if row.encrypted_api_key else None,
            active=row.active,
            source="admin",
            rank=ADMIN_RANK_BASE + row.id,
            api_key_hint=row.api_key_hint,
            catalog=_catalog_of(row.metadata_ or {}),
        )

    def _set_key(self, row: ProviderRow, api_key: str | None) -> None:
        row.encrypted_api_key = self._keybox.seal(api_key) if api_key else None
        row.api_key_hint = key_hint(api_key)

    def _registered(self, provider_id: str) -> Provider:
        provider = self._registry.provider(provider_id)
        assert provider is not None
        return provider

    def _check_name_free(self, name: str) -> None:
        if any(p.name == name and p.source != "admin" for p in self._registry.providers):
            raise APIError(
                409, f"A provider named '{name}' is configured already.", param="name", code="conflict"
            )

    def _check_editable(self, provider_id: str) -> None:
        provider = self._registry.provider(provider_id)
        if provider is not None and provider.source != "admin":
            raise APIError(
                409,
                f"Provider '{provider_id}' comes from the {provider.source} configuration; change it there.",
                code="provider_read_only",
            )

    @staticmethod
    async def _by_name(session: AsyncSession, name: str) -> ProviderRow | None:
        return (await session.scalars(select(ProviderRow).where(ProviderRow.name == name))).first()


def _with_catalog(metadata: dict[str, Any], catalog: dict[str, ModelCatalog] | None) -> dict[str, Any]:
    """The metadata with `catalog` replaced (a new dict, so the JSONB column is seen as changed)."""
    if catalog is None:
        return dict(metadata)
    return {
        **metadata,
        "catalog": {key: entry.model_dump(exclude_none=True) for key, entry in catalog.items()},
    }


def _catalog_of(metadata: dict[str, Any]) -> dict[str, ModelCatalog]:
    stored = metadata.get("catalog") or {}
    return {key: ModelCatalog.model_validate(entry) for key, entry in stored.items()}


async def _stored_row(session: AsyncSession, provider_id: str) -> ProviderRow:
    """The admin-registered provider `provider_id`, or a 404."""
    row = (await session.scalars(select(ProviderRow).where(ProviderRow.public_id == provider_id))).first()
    if row is None:
        raise APIError(404, f"Provider '{provider_id}' not found.", code="not_found")
    return row
