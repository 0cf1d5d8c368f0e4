"""Provider management under `/v1/admin/providers` (the `admin` role only)."""

from __future__ import annotations

from fastapi import APIRouter

from apps.common.auth.principal import AdminDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.deps import ProviderAdminDep, RegistryDep
from apps.llm_api.types import Provider, ProviderDeleted, ProviderList
from apps.llm_api.wire.providers import ProviderCreate, ProviderUpdate, provider_json

router = APIRouter(prefix="/v1/admin/providers", tags=["admin"], route_class=GuardedRoute)


@router.get("", response_model=None)
async def list_providers(_: AdminDep, registry: RegistryDep) -> ProviderList:
    return {"object": "list", "data": [provider_json(p, registry) for p in registry.providers]}


@router.post("", status_code=201, response_model=None)
async def create_provider(
    body: ProviderCreate, _: AdminDep, admin: ProviderAdminDep, registry: RegistryDep
) -> Provider:
    return provider_json(await admin.create(body), registry)


@router.post("/sync", response_model=None)
async def sync_providers(_: AdminDep, admin: ProviderAdminDep, registry: RegistryDep) -> ProviderList:
    await admin.reload()
    return {"object": "list", "data": [provider_json(p, registry) for p in registry.providers]}


@router.get("/{provider_id}", response_model=None)
async def get_provider(provider_id: str, _: AdminDep, registry: RegistryDep) -> Provider:
    provider = registry.provider(provider_id)
    if provider is None:
        raise APIError(404, f"Provider '{provider_id}' not found.", code="not_found")
    return provider_json(provider, registry)


@router.patch("/{provider_id}", response_model=None)
async def update_provider(
    provider_id: str, body: ProviderUpdate, _: AdminDep, admin: ProviderAdminDep, registry: RegistryDep
) -> Provider:
    return provider_json(await admin.update(provider_id, body), registry)


@router.delete("/{provider_id}", response_model=None)
async def delete_provider(provider_id: str, _: AdminDep, admin: ProviderAdminDep) -> ProviderDeleted:
    await admin.delete(provider_id)
    return {"id": provider_id, "object": "provider.deleted", "deleted": True}
