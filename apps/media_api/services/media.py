"""The media service: store, reserve, complete, look up, delete and purge media objects.

- Ownership: every query filters on the caller's user id, so another user's id is simply not found.
- Dedup is per user and by SHA-256 of the real bytes: a second upload of the same bytes answers the
  first object (`deduplicated=True`) without writing to S3 again. The partial unique index settles
  races; the loser deletes what it wrote and answers the winner.
- Every new object is first claimed by a pending row (its id is the primary key), and only then are
  bytes written under the id's key: a request only ever writes or deletes keys its own row owns, so
  even a duplicate snowflake (two replicas with one worker id) cannot overwrite or delete another
  row's object. A claim whose bytes never arrive is dropped at once, or by the purge of expired
  pending rows if the database is unreachable at that moment.
- Storage keys are `media/<snowflake>.<ext>`, with the extension taken from the sniffed type, so no
  client input ever reaches a key.
- Direct uploads: `reserve` inserts a pending row and signs a PUT; `complete` reads the stored object
  back and checks its type, size and hash itself (the store's signature checks are not relied on: moto,
  for one, does not enforce them). Anything that fails the checks is deleted. Dedup on complete answers
  the older object and drops the new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, cast

import asyncpg
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.common.db import session_factory, transaction
from apps.common.errors import APIError
from apps.common.ids import WorkerLeaseLost, jan_id, parse_jan_id
from apps.media_api.db import PENDING, READY, MediaObject
from apps.media_api.services.ingest import Payload, too_large
from apps.media_api.services.ready_cache import ReadyKeyCache
from apps.media_api.services.sniff import ALLOWED_TYPES, Inspected, TooLarge, normalize_mime
from apps.media_api.services.storage import ObjectStore, PresignedUpload

log = logging.getLogger(__name__)

PURGE_BATCH = 200
_CLAIM_ATTEMPTS = 3
RETRY_AFTER = {"Retry-After": "5"}


class IdSource(Protocol):
    """A snowflake generator: a `WorkerLease` in the app, a fixed-worker generator in tests."""

    def next_int(self) -> int: ...


# One array parameter instead of an expanded IN list: one prepared statement for any number of ids.
_READY_KEYS = (
    "SELECT id, storage_key FROM media_objects"
    " WHERE id = ANY($1::bigint[]) AND user_id = $2 AND status = 'ready'"
)


@dataclass(frozen=True)
class Stored:
    media: MediaObject
    deduplicated: bool


def not_found(ident: str) -> APIError:
    return APIError(404, f"Media '{ident}' not found.", code="media_not_found")


def storage_key(media_id: int, mime_type: str) -> str:
    return f"media/{media_id}.{ALLOWED_TYPES[mime_type]}"


def check_allowed(mime_type: str, *, param: str | None = None) -> str:
    mime_type = normalize_mime(mime_type)
    if mime_type not in ALLOWED_TYPES:
        allowed = ", ".join(ALLOWED_TYPES)
        message = f"Media of type '{mime_type}' is not accepted; accepted types: {allowed}."
        raise APIError(415, message, param=param, code="unsupported_media_type")
    return mime_type


def check_content(inspected: Inspected, declared: str | None) -> None:
    if inspected.size == 0:
        raise APIError(400, "The media is empty.", code="empty_media")
    if not inspected.allowed:
        check_allowed(inspected.mime_type)
    if declared is not None and declared != inspected.mime_type:
        message = f"The content was declared as '{declared}' but its bytes are '{inspected.mime_type}'."
        raise APIError(400, message, code="content_type_mismatch")


class MediaService:
    def __init__(
        self,
        engine: AsyncEngine,
        store: ObjectStore,
        ids: IdSource,
        *,
        max_bytes: int,
        reservation_grace: timedelta,
        ready_cache_seconds: float = 0.0,
    ) -> None:
        self.engine = engine
        self.ready_cache = ReadyKeyCache(ready_cache_seconds)
        self.sessions = session_factory(engine)
        self.store = store
        self.ids = ids
        self.max_bytes = max_bytes
        self.reservation_grace = reservation_grace

    async def store_payload(self, user_id: str, payload: Payload, filename: str | None) -> Stored:
        inspected = payload.inspected
        check_content(inspected, payload.declared_type)
        existing = await self.ready_by_hash(user_id, inspected.sha256)
        if existing is not None:
            return Stored(existing, True)
        media = await self.claim(user_id, inspected.mime_type, inspected.size, filename)
        try:
            await self.store.put(media.storage_key, payload.data, media.mime_type)
        except BaseException:
            await self.forget(media)
            raise
        return await self.make_ready(media, inspected)

    async def claim(
        self, user_id: str, mime_type: str, size: int, filename: str | None, *, sha256: str | None = None
    ) -> MediaObject:
        """A pending row for a new id: the row owns the id's storage key before anything is written there.

        Should two replicas ever mint the same id, the second insert fails on the primary key before
        it wrote a byte, and it simply mints again; the first row's object is never touched.
        """
        expires_at = datetime.now(UTC) + timedelta(seconds=self.store.ttl) + self.reservation_grace
        for _ in range(_CLAIM_ATTEMPTS):
            media_id = self._mint()
            media = MediaObject(
                id=media_id,
                user_id=user_id,
                status=PENDING,
                storage_key=storage_key(media_id, mime_type),
                mime_type=mime_type,
                bytes=size,
                sha256=sha256,
                filename=filename,
                expires_at=expires_at,
            )
            try:
                async with transaction(self.sessions) as session:
                    session.add(media)
            except IntegrityError:
                log.warning("snowflake id clash; minting another", extra={"media_id": media_id})
                continue
            return media
        raise APIError(
            503, "No free media id could be reserved; retry.", code="id_clash", headers=RETRY_AFTER
        )

    async def make_ready(
        self, media: MediaObject, inspected: Inspected, filename: str | None = None
    ) -> Stored:
        """Mark a claimed row whose bytes are stored ready, unless the same bytes are already ready."""
        existing = await self.ready_by_hash(media.user_id, inspected.sha256)
        if existing is not None and existing.id == media.id:  # a concurrent complete of this upload won
            return Stored(existing, False)
        if existing is not None:
            await self._drop(media)
            return Stored(existing, True)
        values = {"filename": filename} if filename else {}
        try:
            async with transaction(self.sessions) as session:
                await session.execute(
                    update(MediaObject)
                    .where(MediaObject.id == media.id, MediaObject.status == PENDING)
                    .values(
                        status=READY, bytes=inspected.size, sha256=inspected.sha256, expires_at=None, **values
                    )
                )
        except IntegrityError:
            await self._drop(media)
            return await self._lost_race(media.user_id, inspected.sha256)
        ready = await self._by_id(media.user_id, media.id)
        if ready is None:  # deleted by its owner in the meantime
            raise not_found(jan_id(media.id))
        return Stored(ready, False)

    async def forget(self, media: MediaObject) -> None:
        """Undo a claim whose bytes never made it; the purge catches it if the database is down too."""
        try:
            await self._drop(media)
        except Exception:
            log.warning("dropping an unfinished upload failed; the purge will", extra={"media_id": media.id})

    async def _lost_race(self, user_id: str, sha256: str) -> Stored:
        winner = await self.ready_by_hash(user_id, sha256)
        if winner is None:  # the winner was deleted meanwhile; not worth another round
            raise APIError(409, "The same media was changed concurrently; retry.", code="conflict")
        return Stored(winner, True)

    def _mint(self) -> int:
        try:
            return self.ids.next_int()
        except WorkerLeaseLost as exc:
            message = "Media ids cannot be issued right now (the database is unreachable); retry."
            raise APIError(503, message, code="id_unavailable", headers=RETRY_AFTER) from exc

    async def reserve(
        self, user_id: str, mime_type: str, size: int, sha256: str | None, filename: str | None
    ) -> tuple[MediaObject, PresignedUpload]:
        mime_type = check_allowed(mime_type, param="mime_type")
        if size > self.max_bytes:
            raise too_large(self.max_bytes)
        media = await self.claim(user_id, mime_type, size, filename, sha256=sha256)
        upload = self.store.presign_put(media.storage_key, mime_type, size, sha256)
        return media, upload

    async def complete(self, user_id: str, ident: str) -> Stored:
        media = await self.get(user_id, ident)
        if media.status == READY:
            return Stored(media, False)
        if media.expires_at is not None and media.expires_at < datetime.now(UTC):
            raise APIError(410, f"The upload reservation '{ident}' has expired.", code="reservation_expired")
        inspected = await self._inspect_upload(media)
        try:
            self._check_upload(media, inspected)
        except APIError:
            await self.store.delete(media.storage_key)
            raise
        return await self.make_ready(media, inspected)

    async def _inspect_upload(self, media: MediaObject) -> Inspected:
        try:
            inspected = await self.store.inspect(media.storage_key, self.max_bytes)
        except TooLarge as exc:
            await self.store.delete(media.storage_key)
            raise too_large(self.max_bytes) from exc
        if inspected is None:
            message = "Nothing was uploaded yet: PUT the bytes to the upload URL, then complete."
            raise APIError(409, message, code="upload_missing")
        return inspected

    @staticmethod
    def _check_upload(media: MediaObject, inspected: Inspected) -> None:
        check_content(inspected, media.mime_type)
        if inspected.size != media.bytes:
            message = f"The upload has {inspected.size} bytes, {media.bytes} were declared."
            raise APIError(400, message, code="size_mismatch")
        if media.sha256 is not None and media.sha256 != inspected.sha256:
            raise APIError(400, "The upload's SHA-256 differs from the declared one.", code="hash_mismatch")

    async def _drop(self, media: MediaObject) -> None:
        """Delete the row, then its object: only when this very row (id, owner and key) was still there."""
        async with transaction(self.sessions) as session:
            dropped = await session.scalar(
                delete(MediaObject)
                .where(
                    MediaObject.id == media.id,
                    MediaObject.user_id == media.user_id,
                    MediaObject.storage_key == media.storage_key,
                )
                .returning(MediaObject.storage_key)
            )
        self.ready_cache.forget(media.user_id, media.id)  # once committed: no lookup can find it again
        if dropped is not None:
            await self.store.delete(dropped)

    async def get(self, user_id: str, ident: str) -> MediaObject:
        media_id = parse_jan_id(ident)
        media = None if media_id is None else await self._by_id(user_id, media_id)
        if media is None:
            raise not_found(ident)
        return media

    async def _by_id(self, user_id: str, media_id: int) -> MediaObject | None:
        async with self.sessions() as session:
            media: MediaObject | None = await session.scalar(
                select(MediaObject).where(MediaObject.id == media_id, MediaObject.user_id == user_id)
            )
        return media

    async def get_ready(self, user_id: str, ident: str) -> MediaObject:
        media = await self.get(user_id, ident)
        if media.status != READY:
            raise APIError(409, f"Media '{ident}' has not been uploaded yet.", code="media_not_ready")
        return media

    async def delete(self, user_id: str, ident: str) -> None:
        media = await self.get(user_id, ident)
        await self._drop(media)

    async def list(self, user_id: str, *, limit: int, after: str | None) -> tuple[list[MediaObject], bool]:
        query = select(MediaObject).where(MediaObject.user_id == user_id, MediaObject.status == READY)
        if after is not None:
            cursor = parse_jan_id(after)
            if cursor is None:
                raise APIError(400, f"'{after}' is not a media id.", param="after", code="invalid_value")
            query = query.where(MediaObject.id < cursor)
        async with self.sessions() as session:
            rows = list(await session.scalars(query.order_by(MediaObject.id.desc()).limit(limit + 1)))
        return rows[:limit], len(rows) > limit

    async def ready_keys(self, user_id: str, media_ids: set[int]) -> dict[int, str]:
        """Storage keys of the caller's ready objects among `media_ids`: those resolved lately from
        memory (see ready_cache.py), the others in one query."""
        found, unknown = self.ready_cache.split(user_id, media_ids)
        if not unknown:
            return found
        # The driver itself on a pooled connection, outside any transaction (one statement is atomic
        # alone): this runs before every inference with media, and SQLAlchemy's execute, its tracing
        # and a BEGIN/ROLLBACK pair cost several times the lookup (~0.9 vs ~0.2 ms of CPU). Its errors
        # are asyncpg's, which the kit's handlers answer like SQLAlchemy's (503 when unreachable).
        connection = await self.engine.raw_connection()
        try:
            driver = cast(asyncpg.Connection, connection.driver_connection)
            rows = await driver.fetch(_READY_KEYS, sorted(unknown), user_id)
        finally:
            connection.close()  # back to the pool
        looked_up: dict[int, str] = {row[0]: row[1] for row in rows}
        self.ready_cache.remember(user_id, looked_up)
        return found | looked_up

    async def ready_by_hash(self, user_id: str, sha256: str) -> MediaObject | None:
        async with self.sessions() as session:
            media: MediaObject | None = await session.scalar(
                select(MediaObject).where(
                    MediaObject.user_id == user_id, MediaObject.sha256 == sha256, MediaObject.status == READY
                )
            )
        return media

    async def purge_expired_reservations(self) -> int:
        """Delete pending rows past their deadline and whatever was uploaded for them."""
        purged = 0
        while True:
            expired = (
                select(MediaObject.id)
                .where(MediaObject.status == PENDING, MediaObject.expires_at < func.now())
                .limit(PURGE_BATCH)
                .with_for_update(skip_locked=True)
            )
            async with transaction(self.sessions) as session:
                result = await session.execute(
                    delete(MediaObject).where(MediaObject.id.in_(expired)).returning(MediaObject.storage_key)
                )
                keys = list(result.scalars())
            await self.store.delete(*keys)
            purged += len(keys)
            if len(keys) < PURGE_BATCH:
                return purged
