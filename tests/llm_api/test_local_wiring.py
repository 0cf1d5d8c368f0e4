"""Local mode's llm-api: the model URL is the default provider `local`, tokens from the local issuer."""

from __future__ import annotations

from pathlib import Path

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.local_apps import LOCAL_AUDIENCE
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream


def test_local_mode_serves_the_model_url_as_provider_local(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import openai

    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url) as (url, env):
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=issuer.mint("local-user"), max_retries=0)
        assert {"local/fake-model", "local/fake-model-2"} <= {m.id for m in client.models.list()}
        reply = client.chat.completions.create(
            model="local/fake-model", messages=[{"role": "user", "content": "through the gateway"}]
        )
        assert reply.choices[0].message.content == "echo: through the gateway"
