"""A fake Keycloak on loopback, speaking the wire protocol llm-api's guest login uses.

- `POST /realms/{realm}/protocol/openid-connect/token` (form-encoded, client authentication by
  `client_id`/`client_secret` fields or HTTP Basic): `client_credentials` (service-account token),
  `urn:ietf:params:oauth:grant-type:token-exchange` with `requested_subject` (direct impersonation, as
  Keycloak's legacy token exchange does it), and `refresh_token`. Errors are OAuth JSON
  (`{"error", "error_description"}`) with Keycloak's statuses.
- `GET /realms/{realm}/protocol/openid-connect/certs`: the realm's JWKS. Access tokens are RS256 with
  `iss` = `<url>/realms/<realm>`, so the services' `JWKSVerifier` checks them like real ones.
- Admin REST API (bearer service-account token required): `POST /admin/realms/{realm}/users` → 201 +
  `Location`, 409 on a taken username; `GET …/roles/{name}`; `POST …/users/{id}/role-mappings/realm` → 204;
  and what guest upgrade uses: `PUT …/users/{id}` (409 on a taken email), `PUT …/users/{id}/reset-password`,
  `DELETE …/users/{id}/role-mappings/realm` (404 for a role that is not the realm's), and
  `POST …/users/{id}/logout`.

Faults: `admin_status` makes every admin call answer that status; `token_status` does the same for the
token endpoint. Everything received is kept in `calls` (method, path) for assertions.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr

from apps.common.auth.issuer import LocalIssuer
from apps.common.settings import AuthSettings
from apps.llm_api.auth.settings import KeycloakSettings

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
DEFAULT_ROLES = ("offline_access", "uma_authorization", "default-roles-jan")


class FakeKeycloak:
    __test__ = False

    def __init__(
        self,
        *,
        realm: str = "jan",
        audience: str = "jan-api",
        client_id: str = "backend",
        client_secret: str = "backend-secret",
        realm_roles: tuple[str, ...] = ("guest", "user"),
    ) -> None:
        self.realm = realm
        self.audience = audience
        self.client_id = client_id
        self.client_secret = client_secret
        self.url = ""
        self.roles = {name: {"id": str(uuid.uuid4()), "name": name} for name in realm_roles}
        self.users: dict[str, dict[str, Any]] = {}
        self.role_mappings: dict[str, set[str]] = {}
        self.admin_status: int | None = None
        self.token_status: int | None = None
        self.calls: list[tuple[str, str]] = []
        self.access_ttl = 300
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app = FastAPI()
        base = "/realms/{realm}/protocol/openid-connect"
        self.app.add_api_route(base + "/token", self._token, methods=["POST"])
        self.app.add_api_route(base + "/certs", self._certs, methods=["GET"])
        admin = "/admin/realms/{realm}"
        self.app.add_api_route(admin + "/users", self._create_user, methods=["POST"])
        self.app.add_api_route(admin + "/roles/{role_name}", self._role, methods=["GET"])
        self.app.add_api_route(
            admin + "/users/{user_id}/role-mappings/realm", self._map_roles, methods=["POST"]
        )
        # What guest upgrade uses: update the user, set its password, unmap a role, log it out.
        self.app.add_api_route(admin + "/users/{user_id}", self._update_user, methods=["PUT"])
        self.app.add_api_route(
            admin + "/users/{user_id}/reset-password", self._reset_password, methods=["PUT"]
        )
        self.app.add_api_route(
            admin + "/users/{user_id}/role-mappings/realm", self._unmap_roles, methods=["DELETE"]
        )
        self.app.add_api_route(admin + "/users/{user_id}/logout", self._logout_user, methods=["POST"])
        self.passwords: dict[str, str] = {}
        self.sessions: dict[str, set[str]] = {}  # user id -> its live sessions (sid)

    # --- what tests configure the app with ---------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/{self.realm}"

    def auth_settings(self, **overrides: Any) -> AuthSettings:
        values: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_url": f"{self.issuer}/protocol/openid-connect/certs",
        }
        return AuthSettings(**{**values, **overrides})

    def keycloak_settings(self, **overrides: Any) -> KeycloakSettings:
        values: dict[str, Any] = {
            "base_url": self.url,
            "realm": self.realm,
            "backend_client_id": self.client_id,
            "backend_client_secret": SecretStr(self.client_secret),
        }
        return KeycloakSettings(**{**values, **overrides})

    def reset(self) -> None:
        self.admin_status = None
        self.token_status = None
        self.calls.clear()

    @property
    def _signer(self) -> LocalIssuer:
        return LocalIssuer(self.issuer, self.audience, self._key)

    # --- OIDC endpoints ------------------------------------------------------------------------------

    async def _certs(self, realm: str) -> Response:
        if realm != self.realm:
            return _error(404, "Realm does not exist")
        return JSONResponse(self._signer.jwks())

    async def _token(self, realm: str, request: Request) -> Response:
        self.calls.append(("POST", request.url.path))
        if self.token_status is not None:
            return JSONResponse({"error": "server_error"}, status_code=self.token_status)
        if realm != self.realm:
            return _error(404, "Realm does not exist")
        form = {key: str(value) for key, value in (await request.form()).items()}
        if _client_credentials(request, form) != (self.client_id, self.client_secret):
            return _oauth_error(401, "unauthorized_client", "Invalid client or Invalid client credentials")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._service_account_token()
        if grant == TOKEN_EXCHANGE:
            return self._exchange(form)
        if grant == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")

    def _service_account_token(self) -> Response:
        token = self._signer.mint(
            f"service-account-{self.client_id}",
            ttl_seconds=self.access_ttl,
            roles=DEFAULT_ROLES,
            extra={
                "aud": "realm-management",
                "azp": self.client_id,
                "typ": "Bearer",
                "resource_access": {"realm-management": {"roles": ["manage-users", "view-realm"]}},
            },
        )
        body = {"access_token": token, "expires_in": self.access_ttl, "refresh_expires_in": 0}
        return JSONResponse(
            {**body, "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email"}
        )

    def _exchange(self, form: dict[str, str]) -> Response:
        subject = form.get("requested_subject", "")
        user = self.users.get(subject) or next(
            (u for u in self.users.values() if u["username"] == subject), None
        )
        if user is None:
            return _oauth_error(400, "invalid_token", "Requested subject not found")
        if form.get("requested_token_type", REFRESH_TOKEN_TYPE) != REFRESH_TOKEN_TYPE:
            return _oauth_error(400, "invalid_request", "requested_token_type unsupported")
        return self._token_pair(user, azp=form.get("audience") or self.client_id, exchanged=True)

    def _refresh(self, refresh_token: str) -> Response:
        try:
            claims = jwt.decode(
                refresh_token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=self.issuer,
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        user = self.users.get(str(claims.get("sub")))
        if claims.get("typ") != "Refresh" or user is None or not user.get("enabled", True):
            return _oauth_error(400, "invalid_grant", "Invalid refresh token")
        if claims.get("sid") not in self.sessions.get(user["id"], set()):
            return _oauth_error(400, "invalid_grant", "Session not active")
        return self._token_pair(user, azp=str(claims.get("azp", self.client_id)), exchanged=False)

    def _token_pair(self, user: dict[str, Any], *, azp: str, exchanged: bool) -> Response:
        roles = (*DEFAULT_ROLES, *sorted(self.role_mappings.get(user["id"], set())))
        session = str(uuid.uuid4())
        self.sessions.setdefault(user["id"], set()).add(session)
        profile = {"preferred_username": user["username"], "azp": azp, "sid": session}
        if user.get("email"):
            profile["email"] = user["email"]
        if user.get("firstName"):
            profile["name"] = user["firstName"]
        signer = self._signer
        access = signer.mint(
            user["id"], ttl_seconds=self.access_ttl, roles=roles, extra={**profile, "typ": "Bearer"}
        )
        refresh = signer.mint(
            user["id"], ttl_seconds=1800, roles=roles, extra={**profile, "typ": "Refresh", "aud": self.issuer}
        )
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.access_ttl,
            "refresh_expires_in": 1800,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "session_state": session,
            "scope": "openid profile email",
        }
        if exchanged:
            body["issued_token_type"] = REFRESH_TOKEN_TYPE
        return JSONResponse(body)

    # --- admin REST API ------------------------------------------------------------------------------

    def _user_refusal(self, request: Request, realm: str, user_id: str) -> Response | None:
        """`_admin_refusal`, then a 404 for an unknown user (the user-scoped admin endpoints)."""
        if (refusal := self._admin_refusal(request, realm)) is not None:
            return refusal
        return None if user_id in self.users else _error(404, "User not found")

    async def _realm_roles(self, request: Request) -> set[str] | None:
        """The names in a role-mapping body (`[{"id", "name"}]`), or None if one is not a realm role."""
        wanted = await request.json()
        known = {role["id"]: name for name, role in self.roles.items()}
        if not isinstance(wanted, list) or any(
            known.get(role.get("id")) != role.get("name") for role in wanted
        ):
            return None
        return {str(role["name"]) for role in wanted}

    def _admin_refusal(self, request: Request, realm: str) -> Response | None:
        self.calls.append((request.method, request.url.path))
        if self.admin_status is not None:
            return JSONResponse({"error": "unknown_error"}, status_code=self.admin_status)
        if realm != self.realm:
            return _error(404, "Realm not found.")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            claims = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"], audience="realm-management"
            )
        except jwt.PyJWTError:
            return JSONResponse({"error": "HTTP 401 Unauthorized"}, status_code=401)
        roles = claims.get("resource_access", {}).get("realm-management", {}).get("roles", [])
        if scheme.lower() != "bearer" or "manage-users" not in roles:
            return JSONResponse({"error": "HTTP 403 Forbidden"}, status_code=403)
        return None

    async def _create_user(self, realm: str, request: Request) -> Response:
        if (refusal := self._admin_refusal(request, realm)) is not None:
            return refusal
        representation = await request.json()
        username = str(representation.get("username", "")).lower()
        if not username:
            return _error(400, "User name is missing", key="errorMessage")
        if any(user["username"] == username for user in self.users.values()):
            return _error(409, "User exists with same username", key="errorMessage")
        user_id = str(uuid.uuid4())
        self.users[user_id] = {
            **representation,
            "id": user_id,
            "username": username,
            "createdTimestamp": int(time.time() * 1000),
        }
        location = f"{self.url}/admin/realms/{realm}/users/{user_id}"
        return Response(status_code=201, headers={"Location": location})

    async def _role(self, realm: str, role_name: str, request: Request) -> Response:
        if (refusal := self._admin_refusal(request, realm)) is not None:
            return refusal
        role = self.roles.get(role_name)
        if role is None:
            return _error(404, "Could not find role")
        return JSONResponse({**role, "composite": False, "clientRole": False, "containerId": realm})

    async def _map_roles(self, realm: str, user_id: str, request: Request) -> Response:
        if (refusal := self._user_refusal(request, realm, user_id)) is not None:
            return refusal
        wanted = await self._realm_roles(request)
        if wanted is None:
            return _error(404, "Role not found")
        self.role_mappings.setdefault(user_id, set()).update(wanted)
        return Response(status_code=204)

    async def _update_user(self, realm: str, user_id: str, request: Request) -> Response:
        if (refusal := self._user_refusal(request, realm, user_id)) is not None:
            return refusal
        user = self.users[user_id]
        changes = await request.json()
        email = changes.get("email")
        if email and any(u.get("email") == email for uid, u in self.users.items() if uid != user_id):
            return _error(409, "User exists with same email", key="errorMessage")
        user.update({key: value for key, value in changes.items() if key not in ("id", "username")})
        return Response(status_code=204)

    async def _reset_password(self, realm: str, user_id: str, request: Request) -> Response:
        if (refusal := self._user_refusal(request, realm, user_id)) is not None:
            return refusal
        credential = await request.json()
        if credential.get("type") != "password" or not credential.get("value"):
            return _error(400, "invalid credential", key="errorMessage")
        self.passwords[user_id] = str(credential["value"])
        return Response(status_code=204)

    async def _unmap_roles(self, realm: str, user_id: str, request: Request) -> Response:
        if (refusal := self._user_refusal(request, realm, user_id)) is not None:
            return refusal
        wanted = await self._realm_roles(request)
        if wanted is None:
            return _error(404, "Role not found")
        self.role_mappings.get(user_id, set()).difference_update(wanted)
        return Response(status_code=204)

    async def _logout_user(self, realm: str, user_id: str, request: Request) -> Response:
        if (refusal := self._user_refusal(request, realm, user_id)) is not None:
            return refusal
        self.sessions.pop(user_id, None)
        return Response(status_code=204)


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
        return client_id, secret
    return form.get("client_id"), form.get("client_secret")


def _oauth_error(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _error(status: int, message: str, *, key: str = "error") -> Response:
    return JSONResponse({key: message}, status_code=status)
