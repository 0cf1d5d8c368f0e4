"""The four apps behind the local gateway, wired as `make dev` wires them (llm-api's local identity
provider included), shared by the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream

LANDING = "https://app.example.test/signed-in"


@pytest.fixture(scope="module")
def gateway(
    database_url: str,
    s3_endpoint: str,
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    data_dir = Path(tmp_path_factory.mktemp("accounts"))
    with serve_local(
        database_url,
        s3_endpoint,
        data_dir,
        model_url=upstream_server.base_url,
        internal_token="accounts",
        login_redirects=(LANDING,),
    ) as (url, _):
        yield url
