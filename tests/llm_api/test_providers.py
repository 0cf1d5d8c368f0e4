"""Providers: the file, public model ids, selection, sync, upstream auth, admin management."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import text

from apps.common.db import create_engine
from apps.common.errors import APIError
from apps.llm_api.providers.config import (
    ProvidersFileError,
    auth_headers,
    load_providers_file,
    public_model_id,
)
from apps.llm_api.providers.crypto import KeyBox
from apps.llm_api.providers.registry import Provider, ProviderRegistry
from tests.harness.issuer import TestIssuer
from tests.harness.llm_api import LlmApi, llm_api_settings
from tests.harness.server import serve_fake
from tests.harness.upstream import FakeUpstream
from tests.harness.waiting import CLIENT_TIMEOUT


@pytest.fixture(scope="module")
def keyed_upstream() -> Iterator[FakeUpstream]:
    """A second upstream that insists on its own API key and serves other models."""
    with serve_fake(
        FakeUpstream(models=["Keyed-Model", "acme/Shared-Model"], api_key="sk-upstream-secret-1234")
    ) as fake:
        yield fake


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yml"
    path.write_text(text)
    return path


def test_providers_file_expands_env_and_validates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
providers:
  - name: local-vllm
    kind: vllm
    base_url: ${VLLM_URL}/
    api_key: ${VLLM_KEY:-none}
  - name: openai
    kind: OpenAI
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    models: [gpt-4o]
""",
    )
    parsed = load_providers_file(path, {"VLLM_URL": "http://vllm:8000/v1", "OPENAI_API_KEY": "sk-x"})
    first, second = parsed.providers
    assert (
        first.base_url == "http://vllm:8000/v1"
        and first.api_key == "none"
        and first.effective_vendor == "local-vllm"
    )
    assert second.kind == "openai" and second.effective_vendor == "openai" and second.models == ("gpt-4o",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "providers:\n  - name: a\n    base_url: http://x\n    api_key: ${MISSING}\n",
            "environment variable 'MISSING' is not set",
        ),
        (
            "providers:\n  - name: a\n    kind: telepathy\n    base_url: http://x\n",
            "unknown provider kind 'telepathy'",
        ),
        ("providers:\n  - name: a\n    base_url: http://x\n    colour: red\n", "providers.0.colour"),
        ("providers:\n  - name: a\n    base_url: ftp://x\n", "providers.0.base_url"),
        (
            "providers:\n  - {name: a, base_url: 'http://x'}\n  - {name: a, base_url: 'http://y'}\n",
            "used twice",
        ),
        ("providers: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_providers_file_errors_are_clear(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProvidersFileError) as caught:
        load_providers_file(path, {})
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_broken_providers_file_stops_start_up(
    tmp_path: Path, database_url: str, issuer: TestIssuer
) -> None:
    from apps.llm_api.main import create_app

    path = write(tmp_path, "providers:\n  - name: a\n    kind: nope\n    base_url: http://x\n")
    with pytest.raises(ProvidersFileError, match="unknown provider kind"):
        create_app(llm_api_settings(database_url, issuer, providers_file=path))


def test_public_ids_and_auth_headers() -> None:
    assert public_model_id("openai", "gpt-4o") == "openai/gpt-4o"
    assert public_model_id("jan", "Jan-v1-4B") == "jan/jan-v1-4b"
    assert public_model_id("local", "meta-llama/Llama-3-8B") == "meta-llama/llama-3-8b"
    assert public_model_id("gemini", "models/gemini-pro") == "gemini/gemini-pro"
    assert public_model_id("local", "qwen2.5 7b:q4") == "local/qwen2.5-7b-q4"
    assert auth_headers("vllm", "k") == {"Authorization": "Bearer k"}
    assert auth_headers("azure_openai", "k") == {"api-key": "k"}
    assert auth_headers("anthropic", "k") == {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    assert auth_headers("openai", "none") == {} and auth_headers("openai", None) == {}


def test_keys_are_sealed() -> None:
    box = KeyBox("secret-one")
    sealed = box.seal("sk-live-abcdef")
    assert "sk-live" not in sealed and box.open(sealed) == "sk-live-abcdef"
    assert box.seal("sk-live-abcdef") != sealed  # fresh nonce every time
    with pytest.raises(ValueError, match="model_provider_secret"):
        KeyBox("secret-two").open(sealed)


def test_without_a_secret_keys_are_refused_not_stored_weakly() -> None:
    with pytest.raises(APIError) as caught:
        KeyBox(None).seal("sk-live-abcdef")
    assert caught.value.status_code == 400 and caught.value.code == "provider_secret_not_configured"


async def test_selection_is_by_rank_and_sync_keeps_last_good_list(upstream_server: FakeUpstream) -> None:
    down = "http://127.0.0.1:9/v1"

    def provider(name: str, url: str, rank: int) -> Provider:
        return Provider(
            id=f"prov_{name}",
            name=name,
            kind="vllm",
            vendor="shared",
            base_url=url,
            api_key=None,
            active=True,
            source="file",
            rank=rank,
        )

    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        second, first = (
            provider("second", upstream_server.base_url, 2),
            provider("first", upstream_server.base_url, 1),
        )
        registry = ProviderRegistry(client, [second, first])
        await registry.sync()
        route = registry.select("shared/fake-model")
        assert route is not None and route.provider.name == "first"
        assert [m.public_id for m in registry.models()] == ["shared/fake-model", "shared/fake-model-2"]
        # the first provider's URL breaks: its last good models stay, so selection does not flap
        registry._configured = [second, provider("first", down, 1)]
        await registry.sync()
        route = registry.select("shared/fake-model")
        assert route is not None and route.provider.name == "first" and route.provider.base_url == down
        await asyncio.sleep(0)


def test_admin_endpoints_need_the_admin_role(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        response = http.get("/v1/admin/providers")
        assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
        assert http.post("/v1/admin/providers", json={"name": "x", "base_url": "http://x"}).status_code == 403


def test_admin_registers_a_keyed_provider(
    llm_api: LlmApi, keyed_upstream: FakeUpstream, database_url: str
) -> None:
    admin = llm_api.token(roles=("user", "admin"))
    with llm_api.http(admin) as http:
        listed = http.get("/v1/admin/providers").json()["data"]
        assert any(p["name"] == "fake" and p["source"] == "environment" for p in listed)
        fake_id = next(p["id"] for p in listed if p["name"] == "fake")
        assert http.patch(f"/v1/admin/providers/{fake_id}", json={"active": False}).status_code == 409
        assert (
            http.post(
                "/v1/admin/providers", json={"name": "x", "base_url": "http://x", "kind": "bogus"}
            ).status_code
            == 400
        )

        created = http.post(
            "/v1/admin/providers",
            json={
                "name": "keyed",
                "kind": "vllm",
                "base_url": keyed_upstream.base_url,
                "api_key": keyed_upstream.api_key,
            },
        )
        assert created.status_code == 201, created.text
        provider = created.json()
        assert provider["api_key_hint"] == "1234" and "api_key" not in provider
        assert sorted(provider["models"]) == ["acme/shared-model", "keyed/keyed-model"]
        try:
            models = {m.id for m in llm_api.client().models.list()}
            assert {"keyed/keyed-model", "acme/shared-model", "fake/fake-model"} <= models
            assert llm_api.client().models.retrieve("acme/shared-model").owned_by == "keyed"
            reply = llm_api.client().chat.completions.create(
                model="keyed/keyed-model", messages=[{"role": "user", "content": "with key"}]
            )
            assert reply.choices[0].message.content == "echo: with key"
            assert keyed_upstream.headers[-1]["authorization"] == f"Bearer {keyed_upstream.api_key}"
            assert keyed_upstream.requests[-1]["model"] == "Keyed-Model"
            stored = asyncio.run(_stored_key(database_url, provider["id"]))
            assert stored is not None and keyed_upstream.api_key not in stored

            off = http.patch(f"/v1/admin/providers/{provider['id']}", json={"active": False}).json()
            assert off["active"] is False
            with pytest.raises(openai.NotFoundError):
                llm_api.client().chat.completions.create(
                    model="keyed/keyed-model", messages=[{"role": "user", "content": "x"}]
                )
        finally:
            deleted = http.delete(f"/v1/admin/providers/{provider['id']}").json()
        assert deleted == {"id": provider["id"], "object": "provider.deleted", "deleted": True}
        assert http.get(f"/v1/admin/providers/{provider['id']}").status_code == 404


async def _stored_key(database_url: str, provider_id: str) -> Any:
    engine = create_engine(database_url, schema="llm_api")
    try:
        async with engine.connect() as connection:
            query = text("select encrypted_api_key from providers where public_id = :id")
            return await connection.scalar(query, {"id": provider_id})
    finally:
        await engine.dispose()


def test_models_endpoints(llm_api: LlmApi) -> None:
    client = llm_api.client()
    models = client.models.list()
    assert "fake/fake-model" in {m.id for m in models}
    model = client.models.retrieve("fake/fake-model")
    assert model.id == "fake/fake-model" and model.object == "model" and model.owned_by == "fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("fake/none")


def test_file_providers_rank_before_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]],
    keyed_upstream: FakeUpstream,
) -> None:
    path = write(
        tmp_path,
        f"""
providers:
  - name: primary
    vendor: fake
    base_url: {keyed_upstream.base_url}
    api_key: ${{KEYED_KEY}}
    models: [Keyed-Model]
""",
    )
    monkeypatch.setenv("KEYED_KEY", keyed_upstream.api_key or "")
    with wired_llm_api(providers_file=path) as api:
        ids = {m.id for m in api.client().models.list()}
        assert ids == {"fake/keyed-model", "fake/fake-model", "fake/fake-model-2"}
        reply = api.client().chat.completions.create(
            model="fake/keyed-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "echo: hi"
