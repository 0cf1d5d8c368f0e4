"""`POST /internal/api-keys/validate`: how the other services check an `sk_…` key; and
`GET /internal/api-keys/revocations`: the feed their key caches follow to drop revoked keys at once.

The caller must send `X-Internal-Token` equal to the configured internal token; when none is
configured the endpoint refuses everyone. A wrong or missing token is 403, not 401: the kit's
`RemoteAPIKeyResolver` reads 401 as "this key is invalid" and caches it, whereas a misconfigured
service should see "validation unavailable" (503) and not silently reject every key.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from apps.common.auth.principal import unauthorized
from apps.common.auth.remote_keys import INTERNAL_TOKEN_HEADER, REVOCATIONS_PATH
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.llm_api.auth.deps import APIKeysDep, UsersDep
from apps.llm_api.auth.schemas import RevokedKeys, ValidatedKey, ValidateKeyRequest
from apps.llm_api.auth.services.api_keys import FEED_OVERLAP_SECONDS


async def require_internal_token(
    request: Request, token: Annotated[str | None, Header(alias=INTERNAL_TOKEN_HEADER)] = None
) -> None:
    expected = request.app.state.settings.auth.internal_token
    if expected is None:
        raise APIError(403, "Internal endpoints are disabled: no internal token is configured.")
    if token is None or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise APIError(403, f"Missing or wrong {INTERNAL_TOKEN_HEADER}.", code="forbidden")


router = APIRouter(
    route_class=GuardedRoute,
    prefix="/internal",
    include_in_schema=False,
    dependencies=[Depends(require_internal_token)],
)


@router.post("/api-keys/validate")
async def validate_api_key(body: ValidateKeyRequest, store: APIKeysDep) -> ValidatedKey:
    principal = await store.resolve(body.api_key)
    if principal is None or principal.api_key_id is None:
        raise unauthorized("Incorrect, expired or revoked API key.", code="invalid_api_key")
    return ValidatedKey(
        subject=principal.subject,
        issuer=principal.issuer,
        roles=sorted(principal.roles),
        email=principal.email,
        name=principal.name,
        key_id=principal.api_key_id,
    )


@router.get(REVOCATIONS_PATH.removeprefix("/internal"))
async def revoked_api_keys(
    store: APIKeysDep, users: UsersDep, since: Annotated[float, Query(ge=0)]
) -> RevokedKeys:
    """What the other apps' caches must drop: keys revoked or expired since `since`, and guests
    upgraded since then (their guest tokens are refused)."""
    ended_guests = await users.upgraded_since(since, FEED_OVERLAP_SECONDS)
    hashes, until = await store.revoked_since(since)
    return RevokedKeys(revoked=list(hashes), until=until, ended_guests=ended_guests)
