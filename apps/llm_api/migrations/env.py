"""Alembic environment of llm-api."""

from alembic import context

import apps.llm_api.auth.models
import apps.llm_api.chat_tables  # noqa: F401  (registers the chat tables on the metadata)
from apps.common.migrations import run_env
from apps.llm_api.db import Base

run_env(context, Base.metadata, schema="llm_api")
