"""Local mode's llm-api: the model URL is the default provider `local`, tokens from the local issuer."""

from __future__ import annotations

from pathlib import Path

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import free_port
from apps.gateway.local_apps import LOCAL_AUDIENCE, LocalEnvironment, build_apps
from tests.harness.server import serve
from tests.harness.upstream import FakeUpstream


def test_local_mode_serves_the_model_url_as_provider_local(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    import openai

    port = free_port()
    env = LocalEnvironment(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=tmp_path,
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        model_url=upstream.base_url,
        model_api_key=None,
        internal_token="t",
    )
    with serve(LocalGateway(build_apps(env)), port=port) as server:
        issuer = LocalIssuer.from_key_file(tmp_path / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=issuer.mint("local-user"), max_retries=0)
        assert {"local/fake-model", "local/fake-model-2"} <= {m.id for m in client.models.list()}
        reply = client.chat.completions.create(
            model="local/fake-model", messages=[{"role": "user", "content": "through the gateway"}]
        )
        assert reply.choices[0].message.content == "echo: through the gateway"
