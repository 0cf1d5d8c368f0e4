"""Guest sessions: where tokens come from, in local-issuer mode and in Keycloak mode.

Both modes implement `SessionIssuer`: `guest_login()` creates a new guest identity and returns its
tokens; `refresh()` trades a refresh token for a new pair.

Local mode: llm-api signs the tokens with its `LocalIssuer`. A refresh token is a JWT of the same key
with `typ: Refresh` and audience `REFRESH_AUDIENCE`, so no service accepts it as an access token (they
require the API audience), and only llm-api, which checks that audience, accepts it as a refresh token.
Refreshing rotates both tokens. Refresh tokens are stateless JWTs, but each carries a `jti` and, when it
comes from a browser login, the provider session's `sid`: `TokenState` (the local provider's tables,
`services/local_provider.py`) refuses a revoked token, a token of an ended session, and a guest's
token once the guest was upgraded to an account.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt.algorithms import RSAAlgorithm

from apps.common.auth.issuer import LocalIssuer
from apps.common.errors import APIError
from apps.llm_api.auth.settings import LocalTokenSettings

REFRESH_AUDIENCE = "jan-server:refresh"
GUEST_ROLE = "guest"
_PROFILE_CLAIMS = ("preferred_username", "name", "email")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - a scheme name


class TokenState(Protocol):
    async def check_refresh(self, claims: dict[str, Any]) -> None:
        """Raise `invalid_refresh_token(...)` when a well-signed refresh token must be refused."""
        ...


class SessionIssuer(Protocol):
    async def guest_login(self) -> TokenPair: ...

    async def refresh(self, refresh_token: str) -> TokenPair: ...


def invalid_refresh_token(reason: str) -> APIError:
    return APIError(401, f"Invalid refresh token: {reason}.", code="invalid_refresh_token")


class LocalSessions:
    """Sessions signed by llm-api's own issuer key."""

    def __init__(
        self, issuer: LocalIssuer, settings: LocalTokenSettings, state: TokenState | None = None
    ) -> None:
        self._issuer = issuer
        self._settings = settings
        self.state = state
        jwk = issuer.jwks()["keys"][0]
        self._public_key: Any = RSAAlgorithm.from_jwk(jwk)

    async def guest_login(self) -> TokenPair:
        subject = str(uuid.uuid4())
        profile = {"preferred_username": f"guest-{subject[:8]}", "name": "Guest"}
        return self.pair(subject, (GUEST_ROLE,), profile)

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = await self.verify_refresh(refresh_token)
        roles = tuple(str(role) for role in claims.get("realm_access", {}).get("roles", []))
        profile: dict[str, Any] = {key: claims[key] for key in _PROFILE_CLAIMS if key in claims}
        return self.pair(str(claims["sub"]), roles, profile, session_id=claims.get("sid"))

    async def verify_refresh(self, refresh_token: str) -> dict[str, Any]:
        """The claims of a refresh token this server issued and still honours."""
        try:
            claims = jwt.decode(
                refresh_token,
                self._public_key,
                algorithms=["RS256"],
                audience=REFRESH_AUDIENCE,
                issuer=self._issuer.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise invalid_refresh_token("it has expired") from exc
        except jwt.PyJWTError as exc:
            raise invalid_refresh_token("it was not issued by this server") from exc
        if claims.get("typ") != "Refresh":
            raise invalid_refresh_token("it is not a refresh token")
        if self.state is not None:
            await self.state.check_refresh(claims)
        return claims

    def pair(
        self,
        subject: str,
        roles: tuple[str, ...],
        profile: dict[str, Any],
        *,
        session_id: str | None = None,
    ) -> TokenPair:
        access_ttl = self._settings.access_ttl_seconds
        common = {**profile, **({"sid": session_id} if session_id else {})}
        access = self._issuer.mint(
            subject, ttl_seconds=access_ttl, roles=roles, extra={**common, "typ": "Bearer"}
        )
        refresh = self._issuer.mint(
            subject,
            ttl_seconds=self._settings.refresh_ttl_seconds,
            roles=roles,
            extra={**common, "typ": "Refresh", "aud": REFRESH_AUDIENCE},
        )
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=access_ttl)
