"""Provider management under `/v1/admin/providers` (the `admin` role only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from apps.common.auth.principal import AdminDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.deps import ProviderAdminDep, RegistryDep
from apps.llm_api.wire.providers import ProviderCreate, ProviderUpdate, provider_json

router = APIRouter(prefix="/v1/admin/providers", tags=["admin"], route_class=GuardedRoute)


@router.get("")
async def list_providers(_: AdminDep, registry: RegistryDep) -> dict[str, Any]:
    return {"object": "list", "data": [provider_json(p, registry) for p in registry.providers]}


@router.post("", status_code=201)
async def create_provider(
    body: ProviderCreate, _: AdminDep, admin: ProviderAdminDep, registry: RegistryDep
) -> dict[str, Any]:
    return provider_json(await admin.create(body), registry)


@router.post("/sync")
async def sync_providers(_: AdminDep, admin: ProviderAdminDep, registry: RegistryDep) -> dict[str, Any]:
    await admin.reload()
    return {"object": "list", "data": [provider_json(p, registry) for p in registry.providers]}


@router.get("/{provider_id}")
async def get_provider(provider_id: str, _: AdminDep, registry: RegistryDep) -> dict[str, Any]:
    provider = registry.provider(provider_id)
    if provider is None:
        raise APIError(404, f"Provider '{provider_id}' not found.", code="not_found")
    return provider_json(provider, registry)


@router.patch("/{provider_id}")
async def update_provider(
    provider_id: str, body: ProviderUpdate, _: AdminDep, admin: ProviderAdminDep, registry: RegistryDep
) -> dict[str, Any]:
    return provider_json(await admin.update(provider_id, body), registry)


@router.delete("/{provider_id}")
async def delete_provider(provider_id: str, _: AdminDep, admin: ProviderAdminDep) -> dict[str, Any]:
    await admin.delete(provider_id)
    return {"id": provider_id, "object": "provider.deleted", "deleted": True}
