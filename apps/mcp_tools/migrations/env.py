"""Alembic environment of mcp-tools."""

from alembic import context

from apps.common.migrations import run_env
from apps.mcp_tools.db import Base

run_env(context, Base.metadata, schema="mcp_tools")
