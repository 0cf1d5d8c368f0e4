"""Tables of response-api, all in the `response_api` schema.

- `responses`: one row per stored response; `body` is the public response object as last written
  (status, output items, usage, error), the columns beside it are what queries filter on.
- `response_input_items`: the input items of a response, in order (the `input_items` endpoint and
  the history that `previous_response_id` replays).
- `response_events`: the events of a background response created with `stream: true`, as the SSE
  frames sent, by sequence number (`responses.event_log` marks such responses); any replica replays
  and follows them (`services/events.py`).
- `tool_executions`: every MCP tool call the loop ran: call id, tool, arguments, result or error,
  status, timing and order. Kept by response id without a foreign key, so calls made for
  `store: false` responses are still recorded.

`responses.conversation_id` names a conversation of llm-api, which owns conversations; it is not a
foreign key (apps never reference each other's tables). `legacy_conversations` is this app's former
conversation store, kept only until `services/legacy.py` has handed its rows to llm-api (migration
0003); nothing else reads it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from apps.common.db import new_metadata
from apps.response_api.types import ExecutionStatus, ResponseBody, RunStatus


class Base(DeclarativeBase):
    metadata = new_metadata()


class LegacyConversation(Base):
    __tablename__ = "legacy_conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ResponseRow(Base):
    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[RunStatus] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    body: Mapped[ResponseBody] = mapped_column(JSONB)
    event_log: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ResponseInputItem(Base):
    __tablename__ = "response_input_items"

    response_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    item: Mapped[dict[str, Any]] = mapped_column(JSONB)


class ResponseEvent(Base):
    __tablename__ = "response_events"

    response_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("responses.id", ondelete="CASCADE"), primary_key=True
    )
    sequence_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame: Mapped[bytes] = mapped_column(LargeBinary)


# What a model names its calls and tools is its own choice, cut to these lengths when recorded.
CALL_ID_CHARS = 128
TOOL_NAME_CHARS = 256


class ToolExecution(Base):
    __tablename__ = "tool_executions"
    __table_args__ = (Index("ix_tool_executions_response_order", "response_id", "execution_order"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    call_id: Mapped[str] = mapped_column(String(CALL_ID_CHARS))
    tool_name: Mapped[str] = mapped_column(String(TOOL_NAME_CHARS))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[Any | None] = mapped_column(JSONB)
    error_message: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ExecutionStatus] = mapped_column(String(32))
    execution_order: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float] = mapped_column()
