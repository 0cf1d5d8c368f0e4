"""The bootstrap Job's script, run with psql against the real test Postgres (as the Job would run it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from infra.database import BOOTSTRAP_SCRIPT

ROLES = ("bootstrap_app_a", "bootstrap_app_b")
MONITOR = "bootstrap_monitor"


def _pg_env(database_url: str) -> dict[str, str]:
    url = make_url(database_url)
    host = url.host or str(url.query.get("host", ""))
    return {
        "PGHOST": host,
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.database or "postgres",
        "PGSSLMODE": "disable",
    }


def _bootstrap(
    env: dict[str, str], roles_dir: Path, passwords: dict[str, str], monitoring: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    for role, password in {**passwords, **(monitoring or {})}.items():
        (roles_dir / role).write_text(password)
    job_env = {
        "PATH": os.environ["PATH"],
        **env,
        "ROLES": " ".join(passwords),
        "ROLES_DIR": str(roles_dir),
        "MONITORING_ROLES": " ".join(monitoring or {}),
    }
    return subprocess.run(
        ["/bin/sh", "-c", BOOTSTRAP_SCRIPT], env=job_env, capture_output=True, text=True, timeout=60
    )


def _query(env: dict[str, str], sql: str) -> str:
    result = subprocess.run(
        ["psql", "-At", "-c", sql],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_bootstrap_creates_roles_and_databases_idempotently_and_rotates_passwords(
    database_url: str, tmp_path: Path
) -> None:
    env = _pg_env(database_url)
    first = _bootstrap(env, tmp_path, dict.fromkeys(ROLES, "first-password"))
    assert first.returncode == 0, first.stderr
    hashes = _query(
        env,
        "SELECT rolname || '=' || rolpassword FROM pg_authid WHERE rolname LIKE 'bootstrap_app_%' ORDER BY 1",
    )

    again = _bootstrap(env, tmp_path, dict.fromkeys(ROLES, "second-password"))
    assert again.returncode == 0, again.stderr
    rotated = _query(
        env,
        "SELECT rolname || '=' || rolpassword FROM pg_authid WHERE rolname LIKE 'bootstrap_app_%' ORDER BY 1",
    )
    assert len(rotated.splitlines()) == len(ROLES) and rotated != hashes

    owners = _query(
        env,
        "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database"
        " WHERE datname LIKE 'bootstrap_app_%' ORDER BY 1",
    )
    assert owners.splitlines() == [f"{role}:{role}" for role in ROLES]
    public_connect = _query(env, "SELECT has_database_privilege('public', 'bootstrap_app_a', 'CONNECT')")
    assert public_connect == "f"


def test_a_monitoring_role_reads_every_database_statistics_but_owns_nothing(
    database_url: str, tmp_path: Path
) -> None:
    env = _pg_env(database_url)
    result = _bootstrap(env, tmp_path, dict.fromkeys(ROLES, "app"), {MONITOR: "exporter-password"})
    assert result.returncode == 0, result.stderr
    assert _query(env, f"SELECT pg_has_role('{MONITOR}', 'pg_monitor', 'member')") == "t"
    assert _query(env, f"SELECT count(*) FROM pg_database WHERE datname = '{MONITOR}'") == "0"
    # What the exporter queries, as the exporter's role: sizes of databases closed to PUBLIC included.
    as_monitor = (
        f"SET ROLE {MONITOR}; SELECT pg_database_size('{ROLES[0]}') > 0,"
        " (SELECT count(*) FROM pg_stat_database) > 0,"
        " current_setting('max_connections')::int > 0"
    )
    assert _query(env, as_monitor).splitlines()[-1] == "t|t|t"
    again = _bootstrap(env, tmp_path, dict.fromkeys(ROLES, "app"), {MONITOR: "rotated"})
    assert again.returncode == 0, again.stderr
