"""`GET /v1/models` and `GET /v1/models/{id}` (ids contain `/`, e.g. `openai/gpt-4o`).

Each entry lists the slash-free `aliases` that select it (see the registry); retrieving by an alias
answers with the model it selects, under its id. Beside OpenAI's fields (`id`, `object`, `created`,
`owned_by`) every model carries its catalog metadata (`context_length`, `max_output_tokens`,
`capabilities` {tools, vision, reasoning}, `description`; see `providers/catalog.py`) and the
`provider` that serves it (id, name, kind); OpenAI's clients keep unknown fields of a model.
"""

from __future__ import annotations

from fastapi import APIRouter

from apps.common.auth.principal import PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.deps import RegistryDep
from apps.llm_api.providers.catalog import catalog_json
from apps.llm_api.providers.registry import ModelRoute, ProviderRegistry
from apps.llm_api.types import Model, ModelList

router = APIRouter(tags=["models"], route_class=GuardedRoute)


def model_json(route: ModelRoute, registry: ProviderRegistry) -> Model:
    provider = route.provider
    return {
        "id": route.public_id,
        "object": "model",
        "created": route.created,
        "owned_by": provider.vendor,
        "aliases": registry.aliases_of(route),
        **catalog_json(route.catalog),
        "provider": {"id": provider.id, "name": provider.name, "kind": provider.kind},
    }


@router.get("/v1/models", response_model=None)
async def list_models(_: PrincipalDep, registry: RegistryDep) -> ModelList:
    return {"object": "list", "data": [model_json(route, registry) for route in registry.models()]}


@router.get("/v1/models/{model_id:path}", response_model=None)
async def get_model(model_id: str, _: PrincipalDep, registry: RegistryDep) -> Model:
    route = registry.select(model_id)
    if route is None:
        raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return model_json(route, registry)
