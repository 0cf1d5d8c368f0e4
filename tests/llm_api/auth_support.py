"""Helpers shared by the auth tests: serve llm-api on loopback, talk to its database directly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import text

from apps.common.db import create_engine
from apps.llm_api.main import create_app
from apps.llm_api.settings import LlmApiSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve

INTERNAL_TOKEN = "internal-test-token"


@contextmanager
def serve_llm_api(database_url: str, *, port: int | None = None, **settings: Any) -> Iterator[str]:
    app = create_app(LlmApiSettings(database_url=SecretStr(database_url), **settings))
    with serve(app, port=port) as server:
        yield server.url


def new_subject() -> str:
    return f"user-{uuid.uuid4()}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user_headers(issuer: TestIssuer, subject: str | None = None, **claims: Any) -> dict[str, str]:
    roles = claims.pop("roles", ("user",))
    return bearer(issuer.mint(subject or new_subject(), roles=roles, extra=claims or None))


def sql(database_url: str, statement: str, **params: Any) -> list[dict[str, Any]]:
    """Run one statement in llm-api's schema (to set up states such as an expired key, or to look)."""

    async def run() -> list[dict[str, Any]]:
        engine = create_engine(database_url, schema="llm_api", pool_size=1)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(statement), params)
                return [dict(row._mapping) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error
