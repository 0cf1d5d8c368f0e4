"""Tables of the chat side of llm-api: providers registered through the admin API, projects,
conversations, items.

Conversations are keyed by `Principal.user_id` (the token subject), so the chat tables do not depend on
the users table; so are projects. A conversation names its project by the project's public id (a
foreign key on it, `ON DELETE SET NULL`: deleting a project detaches its conversations), so rendering
a conversation never needs a join. An item keeps its OpenAI shape in `body` (content parts, call
ids, arguments); the columns beside it are what we filter or report on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from apps.llm_api.db import Base


class ProviderRow(Base):
    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    vendor: Mapped[str | None] = mapped_column(String(64))
    base_url: Mapped[str] = mapped_column(String(512))
    encrypted_api_key: Mapped[str | None] = mapped_column(Text)
    api_key_hint: Mapped[str | None] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ProjectRow(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_projects_user_id_name"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(120))
    instructions: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str | None] = mapped_column(String(256))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    project_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("projects.public_id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


# An upstream names its own finish reasons: one longer than this is cut when stored.
FINISH_REASON_CHARS = 32


class ItemRow(Base):
    __tablename__ = "conversation_items"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    role: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    body: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    finish_reason: Mapped[str | None] = mapped_column(String(FINISH_REASON_CHARS))
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The idempotency key of the append that stored this item (a response id), if it had one.
    append_key: Mapped[str | None] = mapped_column(String(64))


class WithdrawnAppendRow(Base):
    """An append response-api withdrew (`ResponseWrites.withdraw_items`, `withdraw`): a late
    delivery of it is refused. Keyed by the conversation's public id, with no foreign key, so it
    outlives a withdrawn conversation; old ones are removed (`ResponseWrites.WITHDRAWN_KEEP`)."""

    __tablename__ = "withdrawn_appends"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    append_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    withdrawn_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
