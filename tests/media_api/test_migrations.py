"""The migrations build exactly the tables `db.py` declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from apps.common.db import create_engine
from apps.media_api.db import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url, schema="media_api")

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [d for d in compare_metadata(context, Base.metadata) if "alembic_version" not in str(d)]

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()
