"""llm-api on loopback for tests: its settings, the running app, and the clients it hands out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from pydantic import SecretStr

from apps.llm_api.main import create_app
from apps.llm_api.settings import LlmApiSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve

FAKE_MODEL = "fake/fake-model"


@dataclass
class LlmApi:
    """llm-api on loopback. Clients it hands out are closed when the test ends (`close_clients`),
    so a test may use one inline without leaking its connections."""

    url: str
    issuer: TestIssuer
    _opened: list[openai.OpenAI | httpx.Client] = field(default_factory=list)

    def token(self, subject: str | None = None, **kwargs: Any) -> str:
        return self.issuer.mint(subject or f"user-{uuid.uuid4().hex[:10]}", **kwargs)

    def client(self, token: str | None = None) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=token or self.token(), max_retries=0, timeout=30
        )
        self._opened.append(client)
        return client

    def http(self, token: str | None = None) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token or self.token()}"}, timeout=30
        )
        self._opened.append(client)
        return client

    def close_clients(self) -> None:
        while self._opened:
            self._opened.pop().close()


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
        api = LlmApi(server.url, issuer)
        try:
            yield api
        finally:
            api.close_clients()
