"""llm-api served on loopback with the fake upstream, the fake media-api and the test issuer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from apps.llm_api.main import create_app
from apps.llm_api.settings import LlmApiSettings
from tests.harness.fake_media import FakeMedia
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve, serve_fake
from tests.harness.upstream import FakeUpstream

FAKE_MODEL = "fake/fake-model"


@pytest.fixture(scope="session")
def fake_media_server() -> Iterator[FakeMedia]:
    with serve_fake(FakeMedia()) as fake:
        yield fake


@pytest.fixture
def fake_media(fake_media_server: FakeMedia) -> FakeMedia:
    fake_media_server.reset()
    return fake_media_server


@dataclass
class LlmApi:
    url: str
    issuer: TestIssuer

    def token(self, subject: str | None = None, **kwargs: Any) -> str:
        return self.issuer.mint(subject or f"user-{uuid.uuid4().hex[:10]}", **kwargs)

    def client(self, token: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=token or self.token(), max_retries=0, timeout=30
        )

    def http(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token or self.token()}"}, timeout=30
        )


def llm_api_settings(database_url: str, issuer: TestIssuer, **overrides: Any) -> LlmApiSettings:
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "auth": issuer.auth_settings(),
        "model_sync_interval_seconds": 0,
        "model_provider_secret": SecretStr("test-provider-secret"),
    }
    values.update(overrides)
    return LlmApiSettings(**values)


@contextmanager
def running_llm_api(settings: LlmApiSettings, issuer: TestIssuer) -> Iterator[LlmApi]:
    with serve(create_app(settings)) as server:
        yield LlmApi(server.url, issuer)


@pytest.fixture(scope="session")
def llm_api(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream, fake_media_server: FakeMedia
) -> Iterator[LlmApi]:
    settings = llm_api_settings(
        database_url,
        issuer,
        default_provider_url=upstream_server.base_url,
        default_provider_name="fake",
        media_resolve_url=fake_media_server.resolve_url,
    )
    with running_llm_api(settings, issuer) as api:
        yield api


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until `check` returns something truthy (persistence happens after the response)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
