"""Tables of media-api, all in the `media_api` schema.

One row per stored object. `id` is the snowflake integer behind the public `jan_<id>`, so ids sort by
creation time and list pagination is a plain `id < cursor`. A row is `pending` from prepare-upload until
`complete` verified the bytes, then `ready`; `expires_at` is set only on pending rows and drives the
cleanup. Dedup is per user: at most one ready row per (user, sha256), enforced by a partial unique
index so concurrent uploads of the same bytes cannot both win.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from apps.common.db import new_metadata
from apps.common.ids import worker_lease_table

PENDING = "pending"
READY = "ready"


class Base(DeclarativeBase):
    metadata = new_metadata()


class MediaObject(Base):
    __tablename__ = "media_objects"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    storage_key: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_media_objects_user_id_id", "user_id", "id"),
        Index(
            "uq_media_objects_user_sha256_ready",
            "user_id",
            "sha256",
            unique=True,
            postgresql_where=text("status = 'ready'"),
        ),
        Index("ix_media_objects_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
    )


# The leases of the snowflake worker ids media-api's replicas mint with (see apps.common.ids).
WORKER_LEASES = worker_lease_table(Base.metadata)
