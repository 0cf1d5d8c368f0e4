"""Alembic environment of llm-api."""

from alembic import context

import apps.llm_api.auth.models  # noqa: F401 - registers the auth tables on Base.metadata
from apps.common.migrations import run_env
from apps.llm_api.db import Base

run_env(context, Base.metadata, schema="llm_api")
