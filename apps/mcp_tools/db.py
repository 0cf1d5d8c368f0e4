"""Tables of mcp-tools, all in the `mcp_tools` schema."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from apps.common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()
