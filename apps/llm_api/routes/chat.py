"""`POST /v1/chat/completions` (the work is in `services/chat.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from apps.common.auth.principal import PrincipalDep
from apps.common.guard import GuardedRoute
from apps.llm_api.deps import ChatDep

router = APIRouter(tags=["chat"], route_class=GuardedRoute)

# The body is read raw (one parse, unknown fields kept), so describe it for the OpenAPI document.
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": ["model", "messages"]}}},
    }
}


@router.post("/v1/chat/completions", openapi_extra=_BODY, response_model=None)
async def create_chat_completion(request: Request, principal: PrincipalDep, chat: ChatDep) -> Response:
    return await chat.respond(await request.body(), principal)
