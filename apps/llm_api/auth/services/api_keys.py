"""API keys: creation, listing, revocation, and resolution of `sk_…` secrets into principals.

- Secret: `sk_live_` + 48 hex characters (192 random bits). It is returned once, at creation.
- Storage: SHA-256 hex of the whole secret, unique-indexed, plus an 12-character prefix and a
  4-character suffix for display. A pepper (HMAC) would add a secret to keep and rotate without adding
  strength: the secret is random and long, so a leaked hash cannot be reversed by guessing.
- Every key expires (`default_ttl_days` unless asked, never beyond `max_ttl_days`); at most
  `max_per_user` live (neither revoked nor expired) keys per user, counted under a lock on the user
  row so two concurrent creations cannot both pass the check.
- Resolution reads the row on every request (one indexed lookup), so revocation and expiry take effect
  immediately in llm-api. `last_used_at` is written at most once per `last_used_interval_seconds` per
  key: the in-process guard avoids repeated writes here, the conditional UPDATE across replicas.
- A key acts as its owner with the `user` role (`guest` for a guest owner), never with `admin`: roles
  come from the identity provider's tokens and are not stored, so a key cannot outlive a role.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import and_, extract, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.auth.principal import Principal, well_formed_api_key
from apps.common.db import transaction
from apps.common.errors import APIError, bad_request, not_found
from apps.common.ids import random_id
from apps.llm_api.auth.models import APIKey, User
from apps.llm_api.auth.services.users import UserDirectory, UserRecord
from apps.llm_api.auth.settings import APIKeySettings

log = logging.getLogger(__name__)

SECRET_PREFIX = "sk_live_"  # noqa: S105 - a format, not a secret
_DISPLAY_PREFIX_LENGTH = 12
_DISPLAY_SUFFIX_LENGTH = 4
LIST_LIMIT = 100
FEED_OVERLAP_SECONDS = 10.0
FEED_LIMIT = 10_000


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(24)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


KeyStatus = Literal["active", "expired", "revoked"]


def key_status(key: APIKey, now: datetime) -> KeyStatus:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


class APIKeyStore:
    """Owns the `api_keys` table; also the `APIKeyResolver` llm-api's authenticator uses."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], users: UserDirectory, settings: APIKeySettings
    ) -> None:
        self._sessions = sessions
        self._users = users
        self._settings = settings
        self._next_touch: dict[int, float] = {}

    async def create(self, owner: UserRecord, name: str, expires_in_days: int | None) -> tuple[APIKey, str]:
        """A new key and its secret (the only time the secret exists outside the caller)."""
        longest = self._settings.max_ttl_days
        days = min(self._settings.default_ttl_days, longest) if expires_in_days is None else expires_in_days
        if days > longest:
            raise bad_request(f"expires_in_days must be at most {longest}.", param="expires_in_days")
        now = datetime.now(UTC)
        secret = new_secret()
        async with transaction(self._sessions) as session:
            await session.execute(select(User.id).where(User.id == owner.id).with_for_update())
            if await self._live_count(session, owner.id, now) >= self._settings.max_per_user:
                raise APIError(
                    400,
                    f"You already have {self._settings.max_per_user} active API keys; revoke one first.",
                    code="api_key_limit_reached",
                )
            key = APIKey(
                public_id=random_id("key"),
                user_id=owner.id,
                name=name,
                prefix=secret[:_DISPLAY_PREFIX_LENGTH],
                suffix=secret[-_DISPLAY_SUFFIX_LENGTH:],
                key_hash=hash_secret(secret),
                created_at=now,
                expires_at=now + timedelta(days=days),
            )
            session.add(key)
        return key, secret

    async def list(self, owner: UserRecord) -> list[APIKey]:
        statement = (
            select(APIKey)
            .where(APIKey.user_id == owner.id)
            .order_by(APIKey.created_at.desc(), APIKey.id.desc())
            .limit(LIST_LIMIT)
        )
        async with self._sessions() as session:
            return list((await session.scalars(statement)).all())

    async def revoke(self, owner: UserRecord, public_id: str) -> APIKey:
        """Revoke the owner's key; another user's key is reported as not found."""
        async with transaction(self._sessions) as session:
            key = await session.scalar(
                select(APIKey)
                .where(APIKey.public_id == public_id, APIKey.user_id == owner.id)
                .with_for_update()
            )
            if key is None:
                raise not_found("API key", public_id)
            if key.revoked_at is None:
                key.revoked_at = datetime.now(UTC)
        return key

    async def revoked_since(self, since: float) -> tuple[tuple[str, ...], float]:
        """Hashes of keys revoked or expired since `since` (epoch seconds, widened by
        `FEED_OVERLAP_SECONDS` for commit lag and clock skew), and the database's clock now: the
        feed other apps' key caches follow (`apps.common.auth.remote_keys`)."""
        now = func.now()
        start = func.to_timestamp(since) - timedelta(seconds=FEED_OVERLAP_SECONDS)
        statement = select(APIKey.key_hash).where(
            or_(APIKey.revoked_at > start, and_(APIKey.expires_at > start, APIKey.expires_at <= now))
        )
        async with self._sessions() as session:
            hashes = tuple((await session.scalars(statement.limit(FEED_LIMIT))).all())
            until = float(await session.scalar(select(extract("epoch", now))) or 0.0)
        return hashes, until

    async def resolve(self, api_key: str) -> Principal | None:
        if not well_formed_api_key(api_key):
            return None
        statement = select(APIKey, User).join(User, User.id == APIKey.user_id)
        async with self._sessions() as session:
            row = (await session.execute(statement.where(APIKey.key_hash == hash_secret(api_key)))).first()
        if row is None:
            return None
        key, user = row.tuple()
        now = datetime.now(UTC)
        if key_status(key, now) != "active":
            return None
        self._users.remember(UserRecord.of(user))
        await self._touch(key, now)
        return Principal(
            subject=user.subject,
            issuer=user.issuer,
            auth_method="api_key",
            credential=api_key,
            roles=frozenset({"guest" if user.is_guest else "user"}),
            email=user.email,
            name=user.name,
            api_key_id=key.public_id,
        )

    async def _live_count(self, session: AsyncSession, user_id: int, now: datetime) -> int:
        statement = select(func.count()).where(
            APIKey.user_id == user_id,
            APIKey.revoked_at.is_(None),
            or_(APIKey.expires_at.is_(None), APIKey.expires_at > now),
        )
        return int(await session.scalar(statement) or 0)

    async def _touch(self, key: APIKey, now: datetime) -> None:
        interval = self._settings.last_used_interval_seconds
        if key.last_used_at is not None and (now - key.last_used_at).total_seconds() < interval:
            return
        clock = time.monotonic()
        if self._next_touch.get(key.id, 0.0) > clock:
            return
        if len(self._next_touch) > 100_000:
            self._next_touch.clear()
        self._next_touch[key.id] = clock + interval
        statement = (
            update(APIKey)
            .where(
                APIKey.id == key.id,
                or_(APIKey.last_used_at.is_(None), APIKey.last_used_at <= now - timedelta(seconds=interval)),
            )
            .values(last_used_at=now)
        )
        try:
            async with transaction(self._sessions) as session:
                await session.execute(statement)
        except Exception:
            # Bookkeeping only: a failed write must not fail the request it rides on.
            log.warning("could not record last use of API key %s", key.public_id, exc_info=True)
