"""llm-api served on loopback with the fake upstream, the fake media-api and the test issuer.

What tests import (`LlmApi`, `FAKE_MODEL`, settings) lives in `tests/harness/llm_api.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.harness.fake_media import FakeMedia
from tests.harness.issuer import TestIssuer
from tests.harness.llm_api import LlmApi, llm_api_settings, running_llm_api
from tests.harness.server import serve_fake
from tests.harness.upstream import FakeUpstream


@pytest.fixture(scope="session")
def fake_media_server() -> Iterator[FakeMedia]:
    with serve_fake(FakeMedia()) as fake:
        yield fake


@pytest.fixture
def fake_media(fake_media_server: FakeMedia) -> FakeMedia:
    fake_media_server.reset()
    return fake_media_server


@pytest.fixture(scope="session")
def wired_llm_api(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream, fake_media_server: FakeMedia
) -> Callable[..., AbstractContextManager[LlmApi]]:
    """Start an llm-api wired to the fake upstream (as provider `fake`) and the fake media-api;
    keyword arguments override its settings (another provider name or kind, say)."""

    def start(**overrides: Any) -> AbstractContextManager[LlmApi]:
        values: dict[str, Any] = {
            "default_provider_url": upstream_server.base_url,
            "default_provider_name": "fake",
            "media_resolve_url": fake_media_server.resolve_url,
            **overrides,
        }
        return running_llm_api(llm_api_settings(database_url, issuer, **values), issuer)

    return start


@pytest.fixture(scope="session")
def llm_api(wired_llm_api: Callable[..., AbstractContextManager[LlmApi]]) -> Iterator[LlmApi]:
    with wired_llm_api() as api:
        yield api


@pytest.fixture(autouse=True)
def _close_llm_api_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the clients a test took from the shared `llm_api` once the test is over."""
    yield
    if "llm_api" in request.fixturenames:
        api: LlmApi = request.getfixturevalue("llm_api")
        api.close_clients()
