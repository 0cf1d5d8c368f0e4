"""Tables of llm-api, all in the `llm_api` schema."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from apps.common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()
