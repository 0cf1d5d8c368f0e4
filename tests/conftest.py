"""Fixtures every test reuses: Postgres, S3, a JWKS issuer, a fake model upstream."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.common.migrations import upgrade
from apps.gateway.embedded import EmbeddedPostgres, embedded_postgres, embedded_s3
from apps.gateway.routes import APPS
from tests.harness.issuer import TestIssuer
from tests.harness.sandbox import FakeSandbox
from tests.harness.server import serve, serve_fake
from tests.harness.upstream import FakeUpstream


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres | None]:
    """The embedded server, or None when TEST_DATABASE_URL points at an outside one."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="jan-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the server runs as an unprivileged user when tests run as root
        with embedded_postgres(Path(tmp) / "data") as server:
            yield server


@pytest.fixture(scope="session")
def database_url(postgres: EmbeddedPostgres | None) -> str:
    """A Postgres with every app's migrations applied (once per session)."""
    url = os.environ.get("TEST_DATABASE_URL") or (postgres.url if postgres else "")
    for spec in APPS.values():
        upgrade(spec.package, url)
    return url


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A migrated Postgres of the module's own, which its tests may stop and start (fault injection)."""
    with tempfile.TemporaryDirectory(prefix="jan-pg-own-") as tmp:
        os.chmod(tmp, 0o755)
        with embedded_postgres(Path(tmp) / "data") as server:
            for spec in APPS.values():
                upgrade(spec.package, server.url)
            yield server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with embedded_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def issuer() -> Iterator[TestIssuer]:
    test_issuer = TestIssuer()
    with serve(test_issuer.app) as server:
        test_issuer.url = server.url
        yield test_issuer


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with serve_fake(FakeUpstream()) as fake:
        yield fake


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream, with its script and request log cleared."""
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[FakeSandbox]:
    with serve_fake(FakeSandbox()) as fake:
        yield fake


@pytest.fixture
def sandbox(sandbox_server: FakeSandbox) -> FakeSandbox:
    """The session's fake SandboxFusion, with its script cleared."""
    sandbox_server.reset()
    return sandbox_server
