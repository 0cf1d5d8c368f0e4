"""Alembic environment of response-api."""

from alembic import context

from apps.common.migrations import run_env
from apps.response_api.db import Base

run_env(context, Base.metadata, schema="response_api")
