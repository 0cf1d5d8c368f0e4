"""`/v1/auth/guest-login`, `/v1/auth/refresh` and `/v1/auth/me`.

Guest login answers 201 with a token pair and the new user. Before answering, the access token is
verified exactly as any later request's would be (the app's `JWKSVerifier`), so a misconfigured
issuer or audience shows up here as a 502 instead of as tokens nobody accepts. Without Keycloak
settings and without a local issuer, guest login and refresh answer 501.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from apps.common.auth.jwks import TokenError
from apps.common.auth.principal import Authenticator, Principal, PrincipalDep, principal_from_claims
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.common.openapi import error_responses
from apps.common.state import app_state
from apps.llm_api.auth.deps import CurrentUserDep, SessionIssuerDep, UsersDep
from apps.llm_api.auth.schemas import GuestLoginResponse, RefreshRequest, TokenResponse, UserObject
from apps.llm_api.auth.services.tokens import SessionIssuer, TokenPair
from apps.llm_api.auth.services.users import UserRecord

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=GuardedRoute)


@router.post("/guest-login", status_code=201, responses=error_responses(501, 502))
async def guest_login(
    request: Request, issuer: SessionIssuerDep, users: UsersDep, response: Response
) -> GuestLoginResponse:
    tokens = await _configured(issuer).guest_login()
    principal = await issued_principal(request, tokens.access_token)
    user = await users.ensure(principal)
    response.headers["Cache-Control"] = "no-store"
    return GuestLoginResponse(**_tokens(tokens).model_dump(), user=user_object(user, principal))


@router.post("/refresh", responses=error_responses(401, 501, 502))
async def refresh(body: RefreshRequest, issuer: SessionIssuerDep, response: Response) -> TokenResponse:
    tokens = await _configured(issuer).refresh(body.refresh_token)
    response.headers["Cache-Control"] = "no-store"
    return _tokens(tokens)


@router.get("/me")
async def me(principal: PrincipalDep, user: CurrentUserDep) -> UserObject:
    return user_object(user, principal)


async def issued_principal(request: Request, access_token: str) -> Principal:
    """The caller an access token the provider just issued (guest login, browser login, upgrade) names,
    verified as described above."""
    authenticator = app_state(request, "authenticator", Authenticator)
    try:
        claims = await authenticator.verifier.verify(access_token)
    except TokenError as exc:
        raise APIError(
            502,
            f"The identity provider issued a token this server does not accept: {exc}.",
            code="identity_misconfigured",
        ) from exc
    return principal_from_claims(claims, access_token)


def user_object(user: UserRecord, principal: Principal) -> UserObject:
    return UserObject(
        id=user.public_id,
        subject=user.subject,
        issuer=user.issuer,
        email=user.email,
        name=user.name,
        is_guest=user.is_guest,
        roles=sorted(principal.roles),
        auth_method=principal.auth_method,
        api_key_id=principal.api_key_id,
        created_at=int(user.created_at.timestamp()),
    )


def _configured(issuer: SessionIssuer | None) -> SessionIssuer:
    if issuer is None:
        raise APIError(
            501,
            "Guest sessions are not configured on this server (no Keycloak and no local issuer).",
            code="guest_login_unavailable",
        )
    return issuer


def _tokens(tokens: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type=tokens.token_type,
        expires_in=tokens.expires_in,
    )
