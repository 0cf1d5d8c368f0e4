"""The `jan-server` command's migrate and serve steps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from apps.gateway.embedded import free_port, stop_process
from apps.gateway.routes import APPS
from tests.harness.waiting import eventually


def _asyncpg_kwargs(url: str, database: str | None = None) -> dict[str, object]:
    parsed = make_url(url)
    kwargs: dict[str, object] = {"user": parsed.username, "database": database or parsed.database}
    host = parsed.query.get("host") or parsed.host
    kwargs["host"] = host if isinstance(host, str) else None
    if parsed.port:
        kwargs["port"] = parsed.port
    if parsed.password:
        kwargs["password"] = parsed.password
    return kwargs


async def _query(url: str, sql: str, database: str | None = None) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(**_asyncpg_kwargs(url, database))
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


def test_migrate_all_into_a_fresh_database_is_idempotent(database_url: str) -> None:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    asyncio.run(_query(database_url, f'CREATE DATABASE "{name}"'))
    fresh_url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": fresh_url}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "apps.cli", "migrate", "all"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    rows = asyncio.run(
        _query(database_url, "SELECT schema_name FROM information_schema.schemata", database=name)
    )
    schemas = {row["schema_name"] for row in rows}
    assert {spec.schema for spec in APPS.values()} <= schemas
    for spec in APPS.values():
        version = asyncio.run(
            _query(database_url, f'SELECT version_num FROM "{spec.schema}".alembic_version', database=name)
        )
        assert len(version) == 1


def test_migrate_without_a_database_url_fails_clearly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "apps.cli", "migrate", "llm-api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "DATABASE_URL" in result.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_runs_several_worker_processes_on_one_port(database_url: str) -> None:
    name = f"workers_{uuid.uuid4().hex[:8]}"
    asyncio.run(_query(database_url, f'CREATE DATABASE "{name}"'))
    env = {
        **os.environ,
        "DATABASE_URL": make_url(database_url).set(database=name).render_as_string(hide_password=False),
        "MODEL_SYNC_INTERVAL_SECONDS": "0",
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "apps.cli", "migrate", "llm-api"], env=env, capture_output=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    command = [sys.executable, "-m", "apps.cli", "serve", "llm-api", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        eventually(lambda: _answers(f"http://127.0.0.1:{port}/readyz"), timeout=90)
        children = f"/proc/{server.pid}/task/{server.pid}/children"
        # uvicorn's supervisor, its two workers, and multiprocessing's resource tracker.
        eventually(lambda: len(Path(children).read_text().split()) >= 2, timeout=30)
        workers = [
            pid
            for pid in Path(children).read_text().split()
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(workers) == 2
        assert all(_answers(f"http://127.0.0.1:{port}/healthz") for _ in range(10))
    finally:
        stop_process(server)
