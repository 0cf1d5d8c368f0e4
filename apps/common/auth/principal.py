"""Who is calling: the `Principal` dependency.

Credentials are read from `Authorization: Bearer …` or `X-API-Key: …`. A value starting with `sk_` is an
API key and goes to the app's API-key resolver (llm-api looks it up in its own table; the other apps
ask llm-api, see `RemoteAPIKeyResolver`); anything else must be a JWT from the trusted issuer.

Deployments trust exactly one issuer, so the token subject is the user id every stored object is keyed
by; an API key resolves to the subject of the user who created it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from fastapi import Depends, Request

from apps.common.auth.jwks import JWKSVerifier, TokenError
from apps.common.errors import APIError
from apps.common.state import app_state

API_KEY_PREFIX = "sk_"
MAX_API_KEY_LENGTH = 256
_API_KEY_SHAPE = re.compile(rf"sk_[A-Za-z0-9_-]{{1,{MAX_API_KEY_LENGTH - len(API_KEY_PREFIX)}}}")


def well_formed_api_key(credential: str) -> bool:
    """Could this be one of our keys? Anything else is refused (401) before any lookup."""
    return _API_KEY_SHAPE.fullmatch(credential) is not None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    issuer: str
    auth_method: Literal["jwt", "api_key"]
    credential: str = field(repr=False)
    roles: frozenset[str] = frozenset()
    email: str | None = None
    name: str | None = None
    api_key_id: str | None = None

    @property
    def user_id(self) -> str:
        return self.subject

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_guest(self) -> bool:
        return "guest" in self.roles

    def forward_headers(self) -> dict[str, str]:
        """Headers that let a downstream service authenticate the same caller."""
        return {"Authorization": f"Bearer {self.credential}"}


class APIKeyResolver(Protocol):
    async def resolve(self, api_key: str) -> Principal | None: ...


class GuestSessions(Protocol):
    async def guest_ended(self, principal: Principal) -> bool:
        """Whether this guest was upgraded to an account since (its guest tokens are refused)."""
        ...


_PRINCIPAL_CACHE_SIZE = 10_000


def principal_from_claims(claims: dict[str, Any], token: str) -> Principal:
    roles: set[str] = set()
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, dict) and isinstance(realm_access.get("roles"), list):
        roles.update(str(role) for role in realm_access["roles"])
    if isinstance(claims.get("roles"), list):
        roles.update(str(role) for role in claims["roles"])
    name = claims.get("name") or claims.get("preferred_username")
    return Principal(
        subject=str(claims["sub"]),
        issuer=str(claims["iss"]),
        auth_method="jwt",
        credential=token,
        roles=frozenset(roles),
        email=claims.get("email"),
        name=str(name) if name else None,
    )


class Authenticator:
    """Turns request credentials into a `Principal`, or a 401 in the OpenAI envelope."""

    def __init__(
        self,
        verifier: JWKSVerifier,
        api_keys: APIKeyResolver | None = None,
        guests: GuestSessions | None = None,
    ) -> None:
        self.verifier = verifier
        self.api_keys = api_keys
        self.guests = guests
        # The Principal built from a token's claims, reused while the verifier answers with the very
        # claims it was built from (the verifier alone decides when a token stops being trusted).
        self._principals: dict[str, tuple[dict[str, Any], Principal]] = {}

    async def authenticate(self, authorization: str | None, api_key_header: str | None) -> Principal:
        credential = _bearer(authorization) or (api_key_header or "").strip()
        if not credential:
            raise unauthorized("Missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key'.")
        if credential.startswith(API_KEY_PREFIX):
            return await self._api_key(credential)
        try:
            claims = await self.verifier.verify(credential)
        except TokenError as exc:
            raise unauthorized(f"Invalid bearer token: {exc}.", code="invalid_token") from exc
        principal = self._principal(claims, credential)
        if principal.is_guest and self.guests is not None and await self.guests.guest_ended(principal):
            raise guest_session_ended()
        return principal

    def _principal(self, claims: dict[str, Any], token: str) -> Principal:
        known = self._principals.get(token)
        if known is not None and known[0] is claims:
            return known[1]
        principal = principal_from_claims(claims, token)
        if len(self._principals) >= _PRINCIPAL_CACHE_SIZE:
            self._principals.clear()
        self._principals[token] = (claims, principal)
        return principal

    async def _api_key(self, credential: str) -> Principal:
        if self.api_keys is None:
            raise unauthorized("API keys are not accepted here.", code="invalid_api_key")
        if not well_formed_api_key(credential):
            raise unauthorized("Incorrect, expired or revoked API key.", code="invalid_api_key")
        principal = await self.api_keys.resolve(credential)
        if principal is None:
            raise unauthorized("Incorrect, expired or revoked API key.", code="invalid_api_key")
        return principal


def unauthorized(message: str, *, code: str = "unauthorized") -> APIError:
    return APIError(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})


def guest_session_ended() -> APIError:
    return unauthorized(
        "This guest session has ended: the guest became a registered account. Sign in again.",
        code="guest_session_ended",
    )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def get_principal(request: Request) -> Principal:
    # request.state reads scope["state"]; reading the dict itself spares the AttributeError that
    # State raises (and getattr catches) on every request whose route guard set nothing.
    known: Principal | None = request.scope.get("state", {}).get("principal")
    if known is not None:  # already checked by the route guard (`apps.common.guard`)
        return known
    authenticator = app_state(request, "authenticator", Authenticator)
    principal = await authenticator.authenticate(*_credential_headers(request.scope["headers"]))
    request.state.principal = principal
    return principal


def _credential_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """`Authorization` and `X-API-Key` as `request.headers.get` reads them (the first of each, ASGI
    names being lowercase), in one pass over the raw list instead of one `Headers` scan per name."""
    authorization = api_key = None
    for name, value in raw:
        if name == b"authorization":
            if authorization is None:
                authorization = value.decode("latin-1")
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    return authorization, api_key


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise APIError(403, "This endpoint requires the 'admin' role.", code="forbidden")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
