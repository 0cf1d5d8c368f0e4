"""`/v1/auth/api-keys`: create (secret shown once), list (no secrets), revoke.

Managing keys needs a signed-in session (a JWT): a key cannot mint or revoke keys, so a leaked key
cannot outlive its own revocation through keys it created. Guest accounts cannot create keys: they
are throwaway identities, and a long-lived credential would outlive the guest session it came from.
The exception is local mode (llm-api is its own issuer, no Keycloak): there guest login is the only
way in, so the guest is the machine's user, and refusing would leave API keys unusable.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from apps.common.auth.principal import Principal, PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.auth.deps import APIKeysDep, CurrentUserDep
from apps.llm_api.auth.models import APIKey
from apps.llm_api.auth.schemas import APIKeyCreate, APIKeyCreated, APIKeyDeleted, APIKeyList, APIKeyObject
from apps.llm_api.auth.services.api_keys import key_status

router = APIRouter(prefix="/v1/auth/api-keys", tags=["auth"], route_class=GuardedRoute)


@router.post("", status_code=201)
async def create_api_key(
    body: APIKeyCreate,
    principal: PrincipalDep,
    user: CurrentUserDep,
    store: APIKeysDep,
    request: Request,
    response: Response,
) -> APIKeyCreated:
    _require_session(principal)
    if (principal.is_guest or user.is_guest) and not request.app.state.guests_may_create_keys:
        raise APIError(403, "Guest accounts cannot create API keys; sign in first.", code="guest_not_allowed")
    key, secret = await store.create(user, body.name, body.expires_in_days)
    response.headers["Cache-Control"] = "no-store"
    return APIKeyCreated(**api_key_object(key).model_dump(), key=secret)


@router.get("")
async def list_api_keys(user: CurrentUserDep, store: APIKeysDep) -> APIKeyList:
    return APIKeyList(data=[api_key_object(key) for key in await store.list(user)])


@router.delete("/{key_id}")
async def revoke_api_key(
    key_id: str, principal: PrincipalDep, user: CurrentUserDep, store: APIKeysDep
) -> APIKeyDeleted:
    _require_session(principal)
    key = await store.revoke(user, key_id)
    return APIKeyDeleted(id=key.public_id)


def api_key_object(key: APIKey) -> APIKeyObject:
    return APIKeyObject(
        id=key.public_id,
        name=key.name,
        prefix=key.prefix,
        suffix=key.suffix,
        status=key_status(key, datetime.now(UTC)),
        created_at=_unix(key.created_at) or 0,
        expires_at=_unix(key.expires_at),
        last_used_at=_unix(key.last_used_at),
        revoked_at=_unix(key.revoked_at),
    )


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _require_session(principal: Principal) -> None:
    if principal.auth_method != "jwt":
        raise APIError(
            403,
            "API keys are managed with a signed-in session, not with an API key.",
            code="session_required",
        )
