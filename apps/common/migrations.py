"""Per-app Alembic migrations, each app in its own Postgres schema.

Every app keeps an Alembic script directory at `apps/<app>/migrations` whose `env.py` calls
`run_env(metadata, schema)`. The version table lives in the app's schema too, so apps migrate
independently and never see each other's tables. `upgrade()` is what `jan-server migrate <app>`, the
Helm hook Job and local mode run.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from types import ModuleType

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from apps.common.db import async_url


def alembic_config(package: str, url: str) -> Config:
    """An Alembic config for the migrations of `package` (e.g. `apps.media_api`)."""
    script_dir = resources.files(package).joinpath("migrations")
    config = Config()
    config.set_main_option("script_location", str(script_dir))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Apply the app's migrations up to `revision`. Blocking; call from a thread inside an event loop."""
    command.upgrade(alembic_config(package, url), revision)


async def upgrade_async(package: str, url: str) -> None:
    await asyncio.to_thread(upgrade, package, url)


def run_env(context: EnvironmentContext | ModuleType, metadata: MetaData, schema: str) -> None:
    """The body of every app's `env.py` (online mode only; we never emit offline SQL).

    `context` is `alembic.context`, the module that proxies the running `EnvironmentContext`.
    """
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set for the migration")

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(text(f'SET search_path TO "{schema}", public'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                # One migrator per schema at a time, even when several replicas start together.
                await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(main())
