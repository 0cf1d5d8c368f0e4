"""One exception boundary: a 500 is an envelope that keeps the client's connection; no database error
(raised by the real Postgres) is a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from apps.common.db import create_engine
from apps.common.service import service_app
from apps.common.settings import ServiceSettings
from apps.llm_api.main import create_app as create_llm_api
from tests.harness.issuer import TestIssuer
from tests.harness.llm_api import llm_api_settings
from tests.harness.server import serve


def local_port(response: httpx.Response) -> int:
    """The client-side port the response came in on: the same port means the same connection."""
    stream: Any = response.extensions["network_stream"]
    return int(stream.get_extra_info("socket").getsockname()[1])


def add_failing_routes(app: FastAPI, database_url: str) -> None:
    engine = create_engine(database_url, schema="public")

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/test/db/{case}")
    async def database(case: str) -> None:
        statements: dict[str, list[tuple[str, dict[str, Any]]]] = {
            "nul": [("select cast(:v as text)", {"v": "a\x00b"})],
            "range": [("select cast(:v as smallint)", {"v": 10**6})],
            "division": [("select 1 / (random() * 0)::int", {})],
            "unique": [
                ("create temporary table boundary_t (x int primary key)", {}),
                ("insert into boundary_t values (1), (1)", {}),
            ],
            "missing_table": [("select frob from nowhere_at_all", {})],
        }
        async with engine.connect() as connection:
            for statement, params in statements[case]:
                await connection.execute(text(statement), params)


@pytest.fixture(scope="module")
def kit_url(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    app = service_app(ServiceSettings(service_name="boundary-test", auth=issuer.auth_settings()), title="t")
    add_failing_routes(app, database_url)
    with serve(app) as server:
        yield server.url


@pytest.fixture(scope="module")
def llm_api_url(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    app = create_llm_api(llm_api_settings(database_url, issuer))
    add_failing_routes(app, database_url)
    with serve(app) as server:
        yield server.url


@pytest.mark.parametrize("which", ["kit", "llm-api"])
def test_a_500_keeps_the_connection(kit_url: str, llm_api_url: str, which: str) -> None:
    url = kit_url if which == "kit" else llm_api_url
    with httpx.Client(base_url=url, timeout=30) as client:
        first = client.get("/healthz")
        for _ in range(3):
            failed = client.get("/test/boom")
            assert failed.status_code == 500
            assert failed.json()["error"]["type"] == "server_error"
            assert "secret" not in failed.text
            assert failed.headers.get("x-request-id")
            assert failed.headers.get("connection", "").lower() != "close"
            after = client.get("/healthz")
            assert after.status_code == 200
            assert local_port(failed) == local_port(first) == local_port(after)


@pytest.mark.parametrize(
    ("case", "status"),
    [("nul", 400), ("range", 400), ("division", 400), ("unique", 409), ("missing_table", 503)],
)
def test_database_errors_are_never_500(kit_url: str, case: str, status: int) -> None:
    with httpx.Client(base_url=kit_url, timeout=30) as client:
        response = client.get(f"/test/db/{case}")
        assert response.status_code == status, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert client.get("/healthz").status_code == 200
