"""Browser login and accounts: `/v1/auth/login`, `/callback`, `/logout`, `/revoke`, `/upgrade`.

- `GET /v1/auth/login[?redirect_uri=<allowed target>]` answers 302 to the identity provider
  (`services/oidc.py` for state, PKCE and nonce). A target outside the allow-list is a 400.
- `GET /v1/auth/callback?code&state` exchanges the code. With a target, the browser is sent there
  with the tokens in the URL fragment (never in a query string, so they reach no server log); without
  one, the tokens come back as JSON. A forged, expired or replayed state, a provider `error`, or a code
  the provider refuses is a 400 in the OpenAI envelope.
- `POST /v1/auth/logout` and `POST /v1/auth/revoke` take `{"refresh_token"}`, the credential they act
  on, so they need no bearer (a client whose access token expired can still log out).
- `POST /v1/auth/upgrade` (a guest's bearer token): see `services/upgrade.py`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from apps.common.auth.principal import PrincipalDep
from apps.common.errors import APIError, bad_request
from apps.common.guard import GuardedRoute
from apps.common.openapi import error_responses
from apps.llm_api.auth.deps import CurrentUserDep, UsersDep
from apps.llm_api.auth.routes.session import issued_principal, user_object
from apps.llm_api.auth.schemas import (
    LoginTokens,
    SessionEnded,
    SessionRequest,
    UpgradeRequest,
    UpgradeResponse,
)
from apps.llm_api.auth.services.oidc import OIDCClient
from apps.llm_api.auth.services.upgrade import AccountUpgrader, LocalUpgrader, link_unavailable

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=GuardedRoute)

_NO_STORE = {"Cache-Control": "no-store"}
_QUERY_MAX = 4096


def _oidc(request: Request) -> OIDCClient:
    client: OIDCClient | None = getattr(request.app.state, "oidc", None)
    if client is None:
        raise APIError(501, "Browser login is not configured on this server.", code="login_unavailable")
    return client


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "To the identity provider's login."}, **error_responses(400, 501, 503)},
)
async def login(
    request: Request,
    redirect_uri: Annotated[str | None, Query(max_length=_QUERY_MAX)] = None,
) -> RedirectResponse:
    url = await _oidc(request).start(redirect_uri)
    return RedirectResponse(url, status_code=302, headers=_NO_STORE)


@router.get(
    "/callback",
    response_model=None,
    responses={
        200: {"model": LoginTokens, "description": "The tokens, when the login named no target."},
        303: {"description": "To the login's target, with the tokens in the URL fragment."},
        **error_responses(400, 501, 502, 503),
    },
)
async def callback(
    request: Request,
    users: UsersDep,
    state: Annotated[str, Query(min_length=1, max_length=_QUERY_MAX)],
    code: Annotated[str | None, Query(max_length=_QUERY_MAX)] = None,
    error: Annotated[str | None, Query(max_length=_QUERY_MAX)] = None,
    error_description: Annotated[str | None, Query(max_length=_QUERY_MAX)] = None,
) -> Response:
    oidc = _oidc(request)
    if error is not None or code is None:
        detail = error_description or error or "no authorization code"
        raise bad_request(f"The identity provider did not sign you in: {detail}.", code="login_failed")
    result = await oidc.finish(code, state)
    principal = await issued_principal(request, result.pair.access_token)
    user = await users.ensure(principal)
    if result.target is not None:
        fragment = urlencode(
            {
                "access_token": result.pair.access_token,
                "refresh_token": result.pair.refresh_token,
                "id_token": result.id_token,
                "token_type": result.pair.token_type,
                "expires_in": result.pair.expires_in,
            }
        )
        return RedirectResponse(f"{result.target}#{fragment}", status_code=303, headers=_NO_STORE)
    body = LoginTokens(
        access_token=result.pair.access_token,
        refresh_token=result.pair.refresh_token,
        token_type=result.pair.token_type,
        expires_in=result.pair.expires_in,
        id_token=result.id_token,
        user=user_object(user, principal),
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=_NO_STORE)


@router.post("/logout", responses=error_responses(400, 401, 501, 503))
async def logout(body: SessionRequest, request: Request) -> SessionEnded:
    await _oidc(request).logout(body.refresh_token)
    return SessionEnded(status="logged_out")


@router.post("/revoke", responses=error_responses(400, 501, 503))
async def revoke(body: SessionRequest, request: Request) -> SessionEnded:
    await _oidc(request).revoke(body.refresh_token)
    return SessionEnded(status="revoked")


@router.post("/upgrade", responses=error_responses(400, 401, 403, 409, 501, 502, 503))
async def upgrade(
    body: UpgradeRequest,
    request: Request,
    principal: PrincipalDep,
    user: CurrentUserDep,
    users: UsersDep,
    response: Response,
) -> UpgradeResponse:
    if principal.auth_method != "jwt":
        raise APIError(
            403, "Upgrade with the guest's session token, not an API key.", code="session_required"
        )
    if not user.is_guest:
        raise APIError(409, "This account is not a guest.", code="not_a_guest")
    upgrader: AccountUpgrader | None = getattr(request.app.state, "upgrader", None)
    if upgrader is None:
        raise APIError(501, "Accounts are not configured on this server.", code="upgrade_unavailable")
    if body.id_token is not None:
        if body.email is not None or body.password is not None:
            raise bad_request("Send either id_token or email and password, not both.", param="id_token")
        if not isinstance(upgrader, LocalUpgrader):
            raise link_unavailable()  # whatever the token: refused before any verification
        login_claims = await _oidc(request).verify_id_token(body.id_token)
        tokens = await upgrader.link(user.subject, login_claims)
        email = login_claims.get("email")
        name = body.name or login_claims.get("name")
    else:
        if body.email is None or body.password is None or "@" not in body.email:
            raise bad_request("An email and a password (8+ characters) are required.", param="email")
        tokens = await upgrader.with_password(user.subject, body.email, body.password, body.name)
        email, name = body.email.lower(), body.name
    account = await issued_principal(request, tokens.access_token)
    upgraded = await users.upgrade(user, str(email) if email else None, str(name) if name else None)
    response.headers["Cache-Control"] = "no-store"
    return UpgradeResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type=tokens.token_type,
        expires_in=tokens.expires_in,
        user=user_object(upgraded, account),
    )
