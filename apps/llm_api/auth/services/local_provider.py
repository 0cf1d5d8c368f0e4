"""The identity provider of local mode: accounts, authorization codes, sessions, revocation.

In a cluster Keycloak is the provider; locally llm-api plays it with its own signing key, so the
browser login (`routes/login.py`) speaks the same OpenID Connect protocol against either. What it
implements, and nothing more: one registered client (llm-api's login, public, PKCE `S256` only, its
callback as the only redirect URI), a login form with email and password (and "create account"),
authorization codes (hashed at rest, 60 s, single use: a second use also ends the session the first
use opened, as RFC 6749 §4.1.2 recommends), the refresh grant, RFC 7009 revocation and an end-session
endpoint.

Sessions: every code starts a provider session (`sid` in the tokens). Ending it refuses every refresh
token of the session; access tokens live out their short lifetime, as with Keycloak.

Guest upgrade: the account created for a guest takes the guest's subject, so the tokens it gets from
now on name the same subject every app keys its data by (nothing is rewritten anywhere); linking the
identity of a fresh login moves that login's credentials onto the guest's subject.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.auth.issuer import LocalIssuer
from apps.common.db import transaction
from apps.common.errors import APIError
from apps.llm_api.auth.models import (
    LocalAccount,
    LocalAuthCode,
    LocalRevokedToken,
    LocalSession,
    User,
)
from apps.llm_api.auth.services.api_keys import hash_secret
from apps.llm_api.auth.services.oauth import s256
from apps.llm_api.auth.services.passwords import hash_password, verify_password
from apps.llm_api.auth.services.tokens import GUEST_ROLE, LocalSessions, TokenPair, invalid_refresh_token

CODE_TTL_SECONDS = 60
USER_ROLE = "user"


class OAuthError(Exception):
    """An OAuth 2.0 error response of the provider (`{"error", "error_description"}`, RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status_code = status_code


@dataclass(frozen=True)
class ProviderTokens:
    pair: TokenPair
    id_token: str


def normalized_email(email: str) -> str:
    return email.strip().lower()


def account_profile(account: LocalAccount) -> dict[str, Any]:
    """The profile claims of an account's tokens."""
    return {
        "preferred_username": account.email,
        "email": account.email,
        **({"name": account.name} if account.name else {}),
    }


class LocalProvider:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tokens: LocalSessions,
        issuer: LocalIssuer,
        *,
        client_id: str,
        redirect_uris: tuple[str, ...],
    ) -> None:
        self._sessions = sessions
        self._tokens = tokens
        self._issuer = issuer
        self.client_id = client_id
        self.redirect_uris = redirect_uris

    def discovery(self) -> dict[str, Any]:
        base = self._issuer.issuer.rstrip("/")
        return {
            "issuer": self._issuer.issuer,
            "authorization_endpoint": f"{base}/oidc/authorize",
            "token_endpoint": f"{base}/oidc/token",
            "revocation_endpoint": f"{base}/oidc/revoke",
            "end_session_endpoint": f"{base}/oidc/logout",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "token_endpoint_auth_methods_supported": ["none"],
        }

    # Accounts

    async def authenticate(self, email: str, password: str) -> LocalAccount | None:
        async with self._sessions() as session:
            account = await session.scalar(
                select(LocalAccount).where(LocalAccount.email == normalized_email(email))
            )
        if account is None or not verify_password(password, account.password_hash):
            return None
        return account

    async def register(
        self, email: str, password: str, name: str | None, *, subject: str | None = None
    ) -> LocalAccount:
        """A new account; `subject` keeps a guest's identity (guest upgrade). 409 if the email is taken."""
        account = LocalAccount(
            subject=subject or str(uuid.uuid4()),
            email=normalized_email(email),
            password_hash=hash_password(password),
            name=name,
        )
        try:
            async with transaction(self._sessions) as session:
                session.add(account)
        except IntegrityError as exc:
            raise APIError(
                409, "An account with this email already exists.", param="email", code="email_taken"
            ) from exc
        return account

    async def link(self, guest_subject: str, login_subject: str) -> LocalAccount:
        """Move the account `login_subject` logged in with onto the guest's subject, and end that
        login's sessions (their tokens name a subject that no longer exists)."""
        async with transaction(self._sessions) as session:
            taken = await session.scalar(select(exists().where(LocalAccount.subject == guest_subject)))
            if taken:
                raise APIError(409, "This guest already has an account.", code="already_registered")
            account = await session.scalar(
                update(LocalAccount)
                .where(LocalAccount.subject == login_subject)
                .values(subject=guest_subject)
                .returning(LocalAccount)
            )
            if account is None:
                raise APIError(400, "The login's identity is not a local account.", code="invalid_identity")
            await session.execute(
                update(LocalSession)
                .where(LocalSession.subject == login_subject, LocalSession.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )
        return account

    # Authorization codes

    def check_client(self, client_id: str, redirect_uri: str) -> None:
        if client_id != self.client_id:
            raise OAuthError("unauthorized_client", "Unknown client_id.")
        if redirect_uri not in self.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client.")

    async def issue_code(
        self, *, client_id: str, redirect_uri: str, code_challenge: str, nonce: str | None, subject: str
    ) -> str:
        code = secrets.token_urlsafe(32)
        session_id = secrets.token_hex(16)
        async with transaction(self._sessions) as session:
            session.add(LocalSession(id=session_id, subject=subject))
            session.add(
                LocalAuthCode(
                    code_hash=hash_secret(code),
                    client_id=client_id,
                    redirect_uri=redirect_uri,
                    code_challenge=code_challenge,
                    nonce=nonce,
                    subject=subject,
                    session_id=session_id,
                    expires_at=datetime.now(UTC) + timedelta(seconds=CODE_TTL_SECONDS),
                )
            )
        return code

    async def redeem_code(
        self, *, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> ProviderTokens:
        now = datetime.now(UTC)
        async with transaction(self._sessions) as session:
            row = await session.scalar(
                select(LocalAuthCode).where(LocalAuthCode.code_hash == hash_secret(code)).with_for_update()
            )
            if row is None or row.expires_at <= now:
                raise OAuthError("invalid_grant", "The authorization code is unknown or expired.")
            replayed = row.used_at is not None
            if replayed:
                # Committed before the refusal: a replayed code ends the session its first use opened.
                await self._end(session, row.session_id, now)
            row.used_at = row.used_at or now
            code_row = (row.client_id, row.redirect_uri, row.code_challenge, row.nonce, row.subject)
            session_id = row.session_id
            account = await session.get(LocalAccount, row.subject)
        if replayed:
            raise OAuthError("invalid_grant", "The authorization code was already used.")
        stored_client, stored_redirect, challenge, nonce, subject = code_row
        if client_id != stored_client or redirect_uri != stored_redirect:
            raise OAuthError(
                "invalid_grant", "client_id or redirect_uri differ from the authorization request."
            )
        if not hmac.compare_digest(s256(code_verifier), challenge):
            raise OAuthError("invalid_grant", "The code_verifier does not match the code_challenge.")
        if account is None:
            raise OAuthError("invalid_grant", "The account no longer exists.")
        profile = account_profile(account)
        pair = self._tokens.pair(subject, (USER_ROLE,), profile, session_id=session_id)
        id_token = self._issuer.mint(
            subject,
            ttl_seconds=pair.expires_in,
            roles=(USER_ROLE,),
            extra={
                **profile,
                "aud": client_id,
                "sid": session_id,
                "typ": "ID",
                **({"nonce": nonce} if nonce else {}),
            },
        )
        return ProviderTokens(pair=pair, id_token=id_token)

    # Refresh tokens: the refresh grant, and what `LocalSessions.verify_refresh` asks (`TokenState`)

    async def refresh(self, refresh_token: str) -> TokenPair:
        return await self._tokens.refresh(refresh_token)

    async def check_refresh(self, claims: dict[str, Any]) -> None:
        async with self._sessions() as session:
            if await session.get(LocalRevokedToken, str(claims.get("jti", ""))) is not None:
                raise invalid_refresh_token("it was revoked")
            session_id = claims.get("sid")
            if session_id is not None:
                ended = await session.scalar(
                    select(LocalSession.ended_at).where(LocalSession.id == str(session_id))
                )
                if ended is not None:
                    raise invalid_refresh_token("its session has ended")
            roles = claims.get("realm_access", {}).get("roles", [])
            if GUEST_ROLE in roles:
                upgraded = await session.scalar(
                    select(User.upgraded_at).where(
                        User.issuer == self._issuer.issuer, User.subject == str(claims["sub"])
                    )
                )
                if upgraded is not None:
                    raise invalid_refresh_token("the guest became an account; sign in instead")

    async def revoke(self, token: str) -> None:
        """RFC 7009: revoke a refresh token this provider issued; anything else is ignored."""
        try:
            claims = await self._tokens.verify_refresh(token)
        except APIError:
            return
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        async with transaction(self._sessions) as session:
            await session.execute(
                insert(LocalRevokedToken)
                .values(jti=str(claims["jti"]), expires_at=expires)
                .on_conflict_do_nothing()
            )
            # Housekeeping: a revocation matters only while the token could still be used.
            await session.execute(
                delete(LocalRevokedToken).where(LocalRevokedToken.expires_at < datetime.now(UTC))
            )

    async def end_session(self, refresh_token: str) -> bool:
        """End the provider session a refresh token belongs to; False when it names none."""
        try:
            claims = await self._tokens.verify_refresh(refresh_token)
        except APIError:
            return False
        session_id = claims.get("sid")
        if session_id is None:
            # A guest session has no provider session: revoking its token is the whole logout.
            await self.revoke(refresh_token)
            return True
        async with transaction(self._sessions) as session:
            await self._end(session, str(session_id), datetime.now(UTC))
        return True

    @staticmethod
    async def _end(session: AsyncSession, session_id: str, now: datetime) -> None:
        await session.execute(
            update(LocalSession)
            .where(LocalSession.id == session_id, LocalSession.ended_at.is_(None))
            .values(ended_at=now)
        )
