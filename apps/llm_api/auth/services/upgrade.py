"""Guest upgrade: a guest becomes a registered account and keeps everything it owned.

Ownership is keyed by the token subject in every app (llm-api's conversations, response-api's
responses, media-api's media, mcp-tools' documents), and API keys by llm-api's `users` row, found by
(issuer, subject). The design that rewrites nothing in any app: the account keeps the guest's subject.

- Email and password: the identity provider turns the guest into an account in place (Keycloak: the
  same user, its email, password set, guest role removed, sessions logged out; locally: an account
  created with the guest's subject).
- Linking the identity of a login (`id_token` from `/v1/auth/callback`): the login's account takes
  the guest's subject (local provider). Refused when that identity already owns data in llm-api,
  since merging two owners would mean rewriting. Keycloak has no way to move a user's credentials to
  another user, so in a cluster linking is Keycloak's own identity brokering and this answers 501.

Then llm-api's row loses its guest flag and gets `upgraded_at`, which refuses the guest's old tokens
everywhere (`services/users.py`); the answer carries new tokens for the account.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.errors import APIError
from apps.llm_api.auth.models import APIKey, User
from apps.llm_api.auth.services.keycloak import KeycloakSessions
from apps.llm_api.auth.services.local_provider import USER_ROLE, LocalProvider, account_profile
from apps.llm_api.auth.services.tokens import LocalSessions, TokenPair
from apps.llm_api.chat_tables import ConversationRow


class AccountUpgrader(Protocol):
    async def with_password(self, subject: str, email: str, password: str, name: str | None) -> TokenPair: ...


def link_unavailable() -> APIError:
    return APIError(
        501,
        "Linking a login to a guest is not available with Keycloak; upgrade with email and password.",
        code="link_unavailable",
    )


class LocalUpgrader:
    """Email and password, or linking a login's identity (only the local provider can do that)."""

    def __init__(
        self, provider: LocalProvider, tokens: LocalSessions, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._provider = provider
        self._tokens = tokens
        self._sessions = sessions

    async def with_password(self, subject: str, email: str, password: str, name: str | None) -> TokenPair:
        account = await self._provider.register(email, password, name, subject=subject)
        return self._tokens.pair(subject, (USER_ROLE,), account_profile(account))

    async def link(self, subject: str, login: dict[str, Any]) -> TokenPair:
        login_subject = str(login["sub"])
        if login_subject == subject:
            raise APIError(409, "This identity is already the guest's.", code="already_registered")
        await self._refuse_if_owner(str(login["iss"]), login_subject)
        account = await self._provider.link(subject, login_subject)
        return self._tokens.pair(subject, (USER_ROLE,), account_profile(account))

    async def _refuse_if_owner(self, issuer: str, subject: str) -> None:
        """An identity that owns something in llm-api cannot be merged into the guest."""
        owner = select(User.id).where(User.issuer == issuer, User.subject == subject).scalar_subquery()
        async with self._sessions() as session:
            owns = await session.scalar(
                select(
                    exists().where(APIKey.user_id == owner)
                    | exists().where(ConversationRow.user_id == subject)
                )
            )
        if owns:
            raise APIError(
                409,
                "This identity already owns data; sign in with it instead of linking it to the guest.",
                code="identity_in_use",
            )


class KeycloakUpgrader:
    def __init__(self, keycloak: KeycloakSessions) -> None:
        self._keycloak = keycloak

    async def with_password(self, subject: str, email: str, password: str, name: str | None) -> TokenPair:
        return await self._keycloak.upgrade(subject, email, password, name)
