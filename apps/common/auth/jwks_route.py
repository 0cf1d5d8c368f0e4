"""Serves a local issuer's public keys at `/.well-known/jwks.json`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from apps.common.guard import GuardedRoute

router = APIRouter(tags=["auth"], route_class=GuardedRoute)


@router.get("/.well-known/jwks.json", include_in_schema=False)
async def jwks(request: Request) -> dict[str, Any]:
    document: dict[str, Any] = request.app.state.local_issuer.jwks()
    return document
