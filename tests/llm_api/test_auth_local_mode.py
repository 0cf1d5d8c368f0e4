"""Local mode as `make dev` wires it: the four apps behind the local gateway, llm-api as issuer.

A user gets a guest session at the gateway, creates an API key, uses it with the openai client, and
the other services' key check (the kit's remote resolver, configured exactly as local mode configures
every app) accepts it through llm-api's internal endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from apps.common.auth.remote_keys import RemoteAPIKeyResolver
from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import free_port
from apps.gateway.local_apps import LocalEnvironment, build_apps
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import assert_error, bearer


@pytest.fixture(scope="module")
def local(
    database_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEnvironment]:
    port = free_port()
    env = LocalEnvironment(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=tmp_path_factory.mktemp("local-data"),
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        model_url=None,
        model_api_key=None,
        internal_token="local-internal-token",
    )
    with serve(LocalGateway(build_apps(env)), port=port):
        yield env


async def test_guest_session_api_key_and_service_key_check(local: LocalEnvironment) -> None:
    url = local.base_url
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as http:
        login = (await http.post("/v1/auth/guest-login")).json()
        created = await http.post(
            "/v1/auth/api-keys", json={"name": "dev"}, headers=bearer(login["access_token"])
        )
        assert created.status_code == 201, created.text
        secret = created.json()["key"]

        client = openai.AsyncOpenAI(api_key=secret, base_url=f"{url}/v1", max_retries=0)
        me = (await client.get("/auth/me", cast_to=httpx.Response)).json()
        assert me["subject"] == login["user"]["subject"] and me["auth_method"] == "api_key"

        auth = local.auth()
        assert auth.internal_token is not None
        # Closed before the client, as the apps do: a valid key started the revocation poller.
        async with contextlib.aclosing(
            RemoteAPIKeyResolver(
                url=auth.api_key_validation_url,
                client=http,
                internal_token=auth.internal_token.get_secret_value(),
            )
        ) as resolver:
            principal = await resolver.resolve(secret)
        assert principal is not None and principal.subject == login["user"]["subject"]
        assert principal.issuer == local.base_url and principal.api_key_id == created.json()["id"]


def test_the_issuer_key_is_kept_under_the_data_dir(local: LocalEnvironment) -> None:
    assert (Path(local.data_dir) / "issuer-key.pem").exists()
    assert httpx.get(f"{local.base_url}/.well-known/jwks.json", timeout=CLIENT_TIMEOUT).status_code == 200


def test_internal_endpoint_refuses_without_the_token(local: LocalEnvironment) -> None:
    response = httpx.post(
        f"{local.base_url}/internal/api-keys/validate", json={"api_key": "sk_live_x"}, timeout=CLIENT_TIMEOUT
    )
    assert_error(response, 403)
