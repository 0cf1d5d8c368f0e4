"""Alembic environment of llm-api."""

from alembic import context

from apps.common.migrations import run_env
from apps.llm_api.db import Base

run_env(context, Base.metadata, schema="llm_api")
