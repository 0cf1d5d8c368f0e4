"""Alembic environment of media-api."""

from alembic import context

from apps.common.migrations import run_env
from apps.media_api.db import Base

run_env(context, Base.metadata, schema="media_api")
