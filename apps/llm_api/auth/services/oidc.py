"""llm-api as an OpenID Connect client of the identity provider (Keycloak, or the local provider).

- `start(target)`: a fresh `state` (32 random bytes), PKCE verifier (S256 challenge) and nonce; only
  the SHA-256 of the state is stored (`login_attempts`), with the verifier, the nonce and the
  post-login target, for `login_ttl_seconds`. The browser carries nothing but the state.
- `finish(code, state)`: the attempt row is deleted as it is read (`DELETE … RETURNING`), so a state
  works once, and only before it expires; then the code is exchanged with the verifier, and the id
  token is verified against the provider's JWKS (issuer, audience = our client id, expiry) and its
  nonce compared with ours.
- `logout` ends the provider session of a refresh token (the end-session endpoint, which Keycloak
  accepts with `client_id` and `refresh_token` in a POST); `revoke` is RFC 7009 revocation.
The provider's document is fetched once and kept; a failed fetch is retried on the next call.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.auth.jwks import JWKSVerifier, TokenError
from apps.common.db import transaction
from apps.common.errors import APIError, bad_request
from apps.llm_api.auth.models import LoginAttempt
from apps.llm_api.auth.services.api_keys import hash_secret
from apps.llm_api.auth.services.oauth import oauth_error, s256, token_pair, unavailable
from apps.llm_api.auth.services.tokens import TokenPair
from apps.llm_api.auth.settings import OIDCSettings


@dataclass(frozen=True)
class LoginResult:
    pair: TokenPair
    id_token: str
    target: str | None


class OIDCClient:
    def __init__(
        self,
        settings: OIDCSettings,
        http: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession],
        id_tokens: JWKSVerifier,
    ) -> None:
        self.settings = settings
        self._http = http
        self._sessions = sessions
        self.id_tokens = id_tokens
        self._document: dict[str, Any] | None = None

    def check_target(self, target: str | None) -> None:
        if target is not None and target not in self.settings.allowed_redirects:
            raise bad_request(
                "redirect_uri is not one of this server's allowed login redirects.",
                param="redirect_uri",
            )

    async def start(self, target: str | None) -> str:
        """The provider's authorization URL for a new login."""
        self.check_target(target)
        endpoint = str((await self._discovery())["authorization_endpoint"])
        state, verifier, nonce = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(16),
        )
        now = datetime.now(UTC)
        async with transaction(self._sessions) as session:
            # Housekeeping on the way: expired attempts are worthless.
            await session.execute(delete(LoginAttempt).where(LoginAttempt.expires_at < now))
            session.add(
                LoginAttempt(
                    state_hash=hash_secret(state),
                    code_verifier=verifier,
                    nonce=nonce,
                    redirect_target=target,
                    expires_at=now + timedelta(seconds=self.settings.login_ttl_seconds),
                )
            )
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.callback_url,
            "scope": self.settings.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        return f"{endpoint}?{urlencode(query)}"

    async def finish(self, code: str, state: str) -> LoginResult:
        live = LoginAttempt.expires_at > datetime.now(UTC)
        async with transaction(self._sessions) as session:
            attempt = await session.scalar(
                delete(LoginAttempt)
                .where(LoginAttempt.state_hash == hash_secret(state), live)
                .returning(LoginAttempt)
            )
        if attempt is None:
            raise bad_request(
                "Unknown, expired or already used login state; start the login again.",
                param="state",
                code="invalid_state",
            )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.callback_url,
            "code_verifier": attempt.code_verifier,
        }
        body = await self._token_call(form)
        try:
            pair = token_pair(body)
            id_token = str(body["id_token"])
        except (KeyError, TypeError, ValueError) as exc:
            raise APIError(502, "The identity provider's token response is incomplete.") from exc
        claims = await self.verify_id_token(id_token)
        if not hmac.compare_digest(str(claims.get("nonce", "")), attempt.nonce):
            raise APIError(502, "The id token's nonce does not match this login.", code="invalid_id_token")
        return LoginResult(pair=pair, id_token=id_token, target=attempt.redirect_target)

    async def verify_id_token(self, id_token: str) -> dict[str, Any]:
        try:
            return await self.id_tokens.verify(id_token)
        except TokenError as exc:
            raise bad_request(f"Invalid id token: {exc}.", param="id_token", code="invalid_id_token") from exc

    async def logout(self, refresh_token: str) -> None:
        endpoint = (await self._discovery()).get("end_session_endpoint")
        if not endpoint:
            raise APIError(501, "The identity provider has no end-session endpoint.")
        response = await self._post(str(endpoint), {"refresh_token": refresh_token})
        if response.status_code in (400, 401):
            raise APIError(401, "Invalid refresh token.", code="invalid_refresh_token")
        if response.status_code >= 300:
            raise unavailable(f"end-session answered {response.status_code}")

    async def revoke(self, refresh_token: str) -> None:
        endpoint = (await self._discovery()).get("revocation_endpoint")
        if not endpoint:
            raise APIError(501, "The identity provider has no revocation endpoint.")
        response = await self._post(
            str(endpoint), {"token": refresh_token, "token_type_hint": "refresh_token"}
        )
        if response.status_code in (400, 401):
            detail = oauth_error(response)
            raise bad_request(
                f"The identity provider refused the revocation: {detail}.", code="invalid_request"
            )
        if response.status_code >= 300:
            raise unavailable(f"revocation answered {response.status_code}")

    async def _token_call(self, form: dict[str, str]) -> dict[str, Any]:
        endpoint = str((await self._discovery())["token_endpoint"])
        response = await self._post(endpoint, form)
        if response.status_code in (400, 401):
            detail = oauth_error(response)
            raise bad_request(f"The identity provider refused the login: {detail}.", code="invalid_grant")
        if response.status_code != 200:
            raise unavailable(f"token endpoint answered {response.status_code}")
        body: dict[str, Any] = response.json()
        return body

    async def _post(self, url: str, form: dict[str, str]) -> httpx.Response:
        credentials = {"client_id": self.settings.client_id}
        if self.settings.client_secret is not None:
            credentials["client_secret"] = self.settings.client_secret.get_secret_value()
        try:
            return await self._http.post(
                url, data={**form, **credentials}, timeout=self.settings.timeout_seconds
            )
        except httpx.HTTPError as exc:
            raise unavailable(type(exc).__name__) from exc

    async def _discovery(self) -> dict[str, Any]:
        if self._document is None:
            try:
                response = await self._http.get(
                    self.settings.discovery_url, timeout=self.settings.timeout_seconds
                )
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise unavailable(f"discovery failed: {type(exc).__name__}") from exc
            if not isinstance(document, dict) or "authorization_endpoint" not in document:
                raise unavailable("discovery document without an authorization endpoint")
            self._document = document
        return self._document
