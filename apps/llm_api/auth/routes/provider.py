"""The local identity provider's endpoints (local mode only; Keycloak's in a cluster).

`/.well-known/openid-configuration`, `/oidc/authorize` (GET: the login form; POST: its submission),
`/oidc/token`, `/oidc/revoke`, `/oidc/logout`. They speak OAuth 2.0 / OpenID Connect, not the OpenAI
API: the token, revocation and logout endpoints take form bodies and answer OAuth errors
(`{"error", "error_description"}`), as Keycloak's do, so llm-api's login client is the same code for
both. An authorization request that cannot be trusted (unknown client, unregistered redirect URI, no
S256 challenge) is refused with a 400 in the OpenAI envelope and never redirected.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from apps.common.errors import APIError, bad_request
from apps.common.guard import GuardedRoute
from apps.llm_api.auth.services.local_provider import LocalProvider, OAuthError

router = APIRouter(tags=["auth"], route_class=GuardedRoute, include_in_schema=False)

_AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "scope",
)
_MAX_FORM_BYTES = 65_536  # a form-encoded 16 KiB token can triple in size


def _provider(request: Request) -> LocalProvider:
    provider: LocalProvider | None = getattr(request.app.state, "local_provider", None)
    if provider is None:  # a cluster: Keycloak is the provider
        raise APIError(404, "This server is not an identity provider.", code="not_found")
    return provider


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise bad_request("The form is too large.")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise bad_request("The form is not UTF-8.") from exc
    return {key: values[0] for key, values in fields.items()}


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status_code,
        headers={"Cache-Control": "no-store"},
    )


def _checked_request(provider: LocalProvider, params: dict[str, str]) -> dict[str, str]:
    request = {name: params.get(name, "") for name in _AUTHORIZE_PARAMS}
    try:
        provider.check_client(request["client_id"], request["redirect_uri"])
    except OAuthError as exc:
        raise bad_request(exc.description, param="redirect_uri") from exc
    if request["response_type"] != "code":
        raise bad_request("Only response_type=code is supported.", param="response_type")
    if request["code_challenge_method"] != "S256" or not 43 <= len(request["code_challenge"]) <= 128:
        raise bad_request("A PKCE code_challenge with method S256 is required.", param="code_challenge")
    if not request["state"]:
        raise bad_request("state is required.", param="state")
    return request


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request) -> dict[str, Any]:
    return _provider(request).discovery()


@router.get("/oidc/authorize")
async def authorize_form(request: Request) -> HTMLResponse:
    params = _checked_request(_provider(request), dict(request.query_params))
    return HTMLResponse(_login_page(params))


@router.post("/oidc/authorize")
async def authorize_submit(request: Request) -> Response:
    provider = _provider(request)
    form = await _form(request)
    params = _checked_request(provider, form)
    email, password = form.get("email", ""), form.get("password", "")
    if form.get("action") == "register":
        if "@" not in email or len(password) < 8:
            return HTMLResponse(_login_page(params, "An email and a password of 8+ characters."), 400)
        account = await provider.register(email, password, form.get("name") or None)
    else:
        found = await provider.authenticate(email, password)
        if found is None:
            return HTMLResponse(_login_page(params, "Wrong email or password."), 401)
        account = found
    code = await provider.issue_code(
        client_id=params["client_id"],
        redirect_uri=params["redirect_uri"],
        code_challenge=params["code_challenge"],
        nonce=params["nonce"] or None,
        subject=account.subject,
    )
    query = urlencode({"code": code, "state": params["state"]})
    return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)


@router.post("/oidc/token")
async def token(request: Request) -> Response:
    provider = _provider(request)
    form = await _form(request)
    try:
        if form.get("client_id") != provider.client_id:
            raise OAuthError("invalid_client", "Unknown client_id.", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = await provider.redeem_code(
                code=form.get("code", ""),
                client_id=form.get("client_id", ""),
                redirect_uri=form.get("redirect_uri", ""),
                code_verifier=form.get("code_verifier", ""),
            )
            body = _token_body(issued.pair.access_token, issued.pair.refresh_token, issued.pair.expires_in)
            body["id_token"] = issued.id_token
        elif grant == "refresh_token":
            try:
                pair = await provider.refresh(form.get("refresh_token", ""))
            except APIError as exc:
                raise OAuthError("invalid_grant", exc.message) from exc
            body = _token_body(pair.access_token, pair.refresh_token, pair.expires_in)
        else:
            raise OAuthError(
                "unsupported_grant_type", "grant_type must be authorization_code or refresh_token."
            )
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/oidc/revoke")
async def revoke(request: Request) -> Response:
    form = await _form(request)
    # RFC 7009 §2.2: an unknown or invalid token is answered 200 as well.
    await _provider(request).revoke(form.get("token", ""))
    return Response(status_code=200)


@router.post("/oidc/logout")
async def logout(request: Request) -> Response:
    form = await _form(request)
    if not await _provider(request).end_session(form.get("refresh_token", "")):
        return _oauth_error(OAuthError("invalid_grant", "Invalid refresh token."))
    return Response(status_code=204)


def _token_body(access: str, refresh: str, expires_in: int) -> dict[str, Any]:
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }


def _login_page(params: dict[str, str], error: str | None = None) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">' for name, value in params.items()
    )
    message = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to Jan</title></head>
<body><h1>Sign in to Jan</h1>{message}
<form method="post" action="/oidc/authorize">{hidden}
<label>Email <input name="email" type="email" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<label>Name (new accounts) <input name="name" autocomplete="name"></label>
<button name="action" value="login">Sign in</button>
<button name="action" value="register">Create account</button>
</form></body></html>"""
