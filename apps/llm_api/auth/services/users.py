"""The `users` table as a cache-fronted directory.

Every authenticated caller has a row, found by (issuer, subject). The first request of a caller
upserts it (`INSERT … ON CONFLICT DO UPDATE … RETURNING`); later requests are served from memory as
long as the profile the token carries (email, name, guest flag) is unchanged, so a steady caller costs
no database round trip. The cache is bounded and entries age out, so a row edited elsewhere is seen
again within `ttl_seconds`.

Guest upgrade keeps the row (its id and public id, which own the user's conversations and keys) and
its (issuer, subject), which other apps key their data by; it only turns `is_guest` off and stamps
`upgraded_at`. From then on a token with the `guest` role for that subject is refused (401
`guest_session_ended`): here by reading the row, never the cache, for every guest token (`guest_ended`,
so another llm-api replica's cache cannot keep it alive); in the other apps through the revocation feed
(`upgraded_since`, `apps.common.auth.remote_keys`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.auth.principal import Principal, guest_session_ended
from apps.common.db import transaction
from apps.common.errors import APIError
from apps.common.ids import random_id
from apps.llm_api.auth.models import User


@dataclass(frozen=True)
class UserRecord:
    """A `users` row, detached from any session."""

    id: int
    public_id: str
    issuer: str
    subject: str
    email: str | None
    name: str | None
    is_guest: bool
    created_at: datetime
    upgraded: bool = False

    @classmethod
    def of(cls, row: User) -> UserRecord:
        return cls(
            id=row.id,
            public_id=row.public_id,
            issuer=row.issuer,
            subject=row.subject,
            email=row.email,
            name=row.name,
            is_guest=row.is_guest,
            created_at=row.created_at,
            upgraded=row.upgraded_at is not None,
        )

    def matches(self, principal: Principal) -> bool:
        """Whether the row already says what the principal says about the user."""
        return (
            self.email == principal.email
            and self.name == principal.name
            and self.is_guest == principal.is_guest
        )


class UserDirectory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 50_000,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._cache: dict[tuple[str, str], tuple[float, UserRecord]] = {}

    async def ensure(self, principal: Principal) -> UserRecord:
        """The caller's row, created or refreshed from the principal when needed."""
        key = (principal.issuer, principal.subject)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            record = cached[1]
            # API-key principals carry what the row says; JWT principals may bring news.
            if principal.auth_method == "api_key" or record.matches(principal):
                return record
        record = await self._upsert(principal)
        if principal.is_guest and record.upgraded:
            raise guest_session_ended()
        self.remember(record)
        return record

    async def guest_ended(self, principal: Principal) -> bool:
        """Whether this guest was upgraded (`GuestSessions`, asked by the authenticator once per
        request with a guest token): read from the row, never the cache, so another replica's upgrade
        counts at once; a read by the unique key, where an upsert would write on every guest request."""
        async with self._sessions() as session:
            upgraded = await session.scalar(
                select(User.upgraded_at).where(
                    User.issuer == principal.issuer, User.subject == principal.subject
                )
            )
        return upgraded is not None

    def remember(self, record: UserRecord) -> None:
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[(record.issuer, record.subject)] = (time.monotonic() + self._ttl, record)

    async def _upsert(self, principal: Principal) -> UserRecord:
        profile = {"email": principal.email, "name": principal.name, "is_guest": principal.is_guest}
        if principal.auth_method == "api_key":
            # The key's owner exists; its row is the source of the profile, not the other way round.
            profile = {}
        statement = (
            insert(User)
            .values(
                public_id=random_id("user"),
                issuer=principal.issuer,
                subject=principal.subject,
                email=principal.email,
                name=principal.name,
                is_guest=principal.is_guest,
            )
            .on_conflict_do_update(
                constraint="uq_users_issuer_subject",
                set_={**profile, "updated_at": func.now()},
                # An upgraded account's row is never rewritten from a (refused) guest token.
                where=User.upgraded_at.is_(None) if principal.is_guest else None,
            )
            .returning(User)
        )
        async with transaction(self._sessions) as session:
            row = (await session.execute(statement)).scalar_one_or_none()
            if row is None:
                row = (
                    await session.execute(
                        select(User).where(User.issuer == principal.issuer, User.subject == principal.subject)
                    )
                ).scalar_one()
            return UserRecord.of(row)

    async def upgrade(self, user: UserRecord, email: str | None, name: str | None) -> UserRecord:
        """Turn a guest's row into a registered account's: same ids, same identity, no guest flag."""
        statement = (
            update(User)
            .where(User.id == user.id, User.is_guest)
            .values(is_guest=False, upgraded_at=func.now(), updated_at=func.now(), email=email, name=name)
            .returning(User)
        )
        async with transaction(self._sessions) as session:
            row = (await session.execute(statement)).scalar_one_or_none()
        if row is None:
            raise APIError(409, "This account is not a guest.", code="not_a_guest")
        record = UserRecord.of(row)
        self.remember(record)
        return record

    async def upgraded_since(self, since: float, overlap_seconds: float) -> list[str]:
        """Subjects of guests upgraded since `since` (epoch seconds): the feed's `ended_guests`."""
        start = func.to_timestamp(since) - func.make_interval(0, 0, 0, 0, 0, 0, overlap_seconds)
        async with self._sessions() as session:
            rows = await session.scalars(select(User.subject).where(User.upgraded_at > start).limit(10_000))
            return list(rows.all())
