"""`POST /v1/media/resolve`: placeholders in a request payload → presigned URLs (see services/resolve)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from apps.common.auth.principal import PrincipalDep
from apps.common.guard import GuardedRoute
from apps.common.openapi import error_responses
from apps.media_api.deps import ResolverDep

router = APIRouter(prefix="/v1/media", tags=["media"], route_class=GuardedRoute)

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["payload"],
                    "additionalProperties": False,
                    "properties": {
                        "payload": {"description": "Any JSON; placeholders are data:<mime>;jan_<id>"}
                    },
                }
            }
        },
    }
}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The same body with every placeholder replaced by a presigned URL.",
        "content": {
            "application/json": {"schema": _BODY["requestBody"]["content"]["application/json"]["schema"]}
        },
    },
    **error_responses(404),
}


@router.post("/resolve", response_class=Response, openapi_extra=_BODY, responses=_RESPONSES)
async def resolve_media(request: Request, principal: PrincipalDep, resolver: ResolverDep) -> Response:
    """Replace every `data:<mime>;jan_<id>` placeholder with a fresh presigned GET URL."""
    resolved = await resolver.resolve(principal.user_id, await request.body())
    return Response(resolved, media_type="application/json")
