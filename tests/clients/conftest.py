"""The local apps (`make dev`'s wiring) on a scripted model upstream, for third-party client libraries.

The upstream serves `smollm2-135m-instruct`, the local model's name, so the README's examples run
exactly as written: only the base URL is this server's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.server import serve_fake, serve_local
from tests.harness.upstream import FakeUpstream

README = Path(__file__).resolve().parents[2] / "README.md"
README_BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass
class LocalApps:
    url: str
    token: str
    upstream: FakeUpstream

    def readme_example(self, name: str) -> str:
        """The README's Python block that starts with `# example: <name>`, pointed at this server."""
        blocks: list[str] = re.findall(
            r"```python\n(# example: [\w-]+\n.*?)```", README.read_text(), flags=re.S
        )
        found = [block for block in blocks if block.startswith(f"# example: {name}\n")]
        assert len(found) == 1, f"README has {len(found)} examples named {name}"
        assert README_BASE_URL in found[0]
        return found[0].replace(README_BASE_URL, f"{self.url}/v1")


@pytest.fixture(scope="module")
def scripted_upstream() -> Iterator[FakeUpstream]:
    with serve_fake(FakeUpstream(models=["smollm2-135m-instruct"])) as fake:
        yield fake


@pytest.fixture(scope="module")
def local_apps(
    database_url: str,
    s3_endpoint: str,
    scripted_upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalApps]:
    data_dir = tmp_path_factory.mktemp("clients")
    with serve_local(database_url, s3_endpoint, data_dir, model_url=scripted_upstream.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(data_dir / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        yield LocalApps(url=url, token=issuer.mint("client-user"), upstream=scripted_upstream)


@pytest.fixture
def apps(local_apps: LocalApps) -> LocalApps:
    local_apps.upstream.reset()
    return local_apps
