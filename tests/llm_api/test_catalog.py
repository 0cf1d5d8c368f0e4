"""Model catalog metadata beside OpenAI's model fields: from the providers file, the environment
provider, the provider's own `/models`, and the admin API; the official client still parses it all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from apps.llm_api.providers.catalog import Capabilities, ModelCatalog, catalog_json
from apps.llm_api.providers.config import ProvidersFileError, load_providers_file
from apps.llm_api.types import CatalogEntry, ModelCapabilities
from tests.harness.llm_api import LlmApi
from tests.harness.server import serve_fake
from tests.harness.upstream import FakeUpstream


@pytest.fixture(scope="module")
def vllm_like() -> Iterator[FakeUpstream]:
    """An upstream whose `/models` reports a context length, as vLLM's does."""
    with serve_fake(FakeUpstream(models=["Small", "Big"], listing_extra={"max_model_len": 4096})) as fake:
        yield fake


def extra(model: BaseModel) -> dict[str, Any]:
    return model.model_extra or {}


def test_catalog_from_the_file_the_environment_and_the_provider(
    tmp_path: Path, wired_llm_api: Callable[..., AbstractContextManager[LlmApi]], vllm_like: FakeUpstream
) -> None:
    path = tmp_path / "providers.yml"
    path.write_text(
        f"""
providers:
  - name: cat
    kind: vllm
    base_url: {vllm_like.base_url}
    catalog:
      Small:
        context_length: 2048
        max_output_tokens: 512
        capabilities: {{tools: true, reasoning: true}}
        description: A small model.
      "*":
        capabilities: {{vision: true}}
"""
    )
    with wired_llm_api(
        providers_file=path, default_provider_catalog={"fake/fake-model": {"context_length": 1024}}
    ) as api:
        client = api.client()
        small = client.models.retrieve("cat/small")
        assert small.id == "cat/small" and small.object == "model" and small.owned_by == "cat"
        assert extra(small) == {
            "aliases": ["small"],
            "context_length": 2048,
            "max_output_tokens": 512,
            "capabilities": {"tools": True, "vision": False, "reasoning": True},
            "description": "A small model.",
            "provider": {"id": "prov_cat", "name": "cat", "kind": "vllm"},
        }
        big = client.models.retrieve("big")  # by alias, answered under its id
        assert big.id == "cat/big"
        assert extra(big)["context_length"] == 4096  # what the provider's /models reported
        assert extra(big)["capabilities"] == {"tools": False, "vision": True, "reasoning": False}

        listed = {model.id: extra(model) for model in client.models.list()}
        assert listed["cat/small"] == extra(small)
        assert listed["fake/fake-model"]["context_length"] == 1024
        # Nothing declared and nothing reported: the fields are there, empty.
        assert listed["fake/fake-model-2"]["context_length"] is None
        assert listed["fake/fake-model-2"]["capabilities"] == {
            "tools": False,
            "vision": False,
            "reasoning": False,
        }
        assert listed["fake/fake-model-2"]["provider"]["kind"] == "vllm"


def test_a_bad_catalog_entry_stops_start_up_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "providers.yml"
    path.write_text(
        "providers:\n  - name: a\n    base_url: http://x\n    catalog:\n"
        "      m: {context_length: -1, capabilities: {telepathy: true}}\n"
    )
    with pytest.raises(ProvidersFileError) as error:
        load_providers_file(path, {})
    assert "providers.0.catalog.m.context_length" in str(error.value)
    assert "providers.0.catalog.m.capabilities.telepathy" in str(error.value)


def test_admin_sets_and_replaces_a_providers_catalog(llm_api: LlmApi, vllm_like: FakeUpstream) -> None:
    admin = llm_api.token(roles=("user", "admin"))
    catalog = {"Small": {"context_length": 8192, "capabilities": {"tools": True}}}
    with llm_api.http(admin) as http:
        created = http.post(
            "/v1/admin/providers",
            json={"name": "catalogued", "kind": "vllm", "base_url": vllm_like.base_url, "catalog": catalog},
        )
        assert created.status_code == 201, created.text
        provider = created.json()
        try:
            assert provider["catalog"]["Small"]["context_length"] == 8192
            model = llm_api.client().models.retrieve("catalogued/small")
            assert extra(model)["context_length"] == 8192 and extra(model)["capabilities"]["tools"] is True
            assert extra(model)["provider"] == {"id": provider["id"], "name": "catalogued", "kind": "vllm"}

            replaced = http.patch(
                f"/v1/admin/providers/{provider['id']}",
                json={"catalog": {"*": {"capabilities": {"vision": True}, "max_output_tokens": 100}}},
            )
            assert replaced.status_code == 200, replaced.text
            assert set(replaced.json()["catalog"]) == {"*"}
            model = llm_api.client().models.retrieve("catalogued/small")
            assert extra(model)["capabilities"] == {"tools": False, "vision": True, "reasoning": False}
            assert extra(model)["context_length"] == 4096 and extra(model)["max_output_tokens"] == 100
            # Other edits keep the catalog.
            http.patch(f"/v1/admin/providers/{provider['id']}", json={"vendor": "catalogued"})
            assert extra(llm_api.client().models.retrieve("catalogued/small"))["max_output_tokens"] == 100

            bad_catalogs: list[dict[str, Any]] = [
                {"Small": {"context_length": 0}},
                {"Small": {"capabilities": {"tools": "yes please"}}},
                {"Small": {"price": 1}},
                {"": {}},
            ]
            for bad in bad_catalogs:
                refused = http.patch(f"/v1/admin/providers/{provider['id']}", json={"catalog": bad})
                assert refused.status_code == 400, (bad, refused.text)
        finally:
            http.delete(f"/v1/admin/providers/{provider['id']}")
    with pytest.raises(openai.NotFoundError):
        llm_api.client().models.retrieve("catalogued/small")


def test_the_catalog_entry_type_names_every_field_of_the_catalog_model() -> None:
    """Models and providers show `ModelCatalog.model_dump()` as `types.CatalogEntry`: the type must
    follow the model when a field is added."""
    entry = ModelCatalog(context_length=8, capabilities=Capabilities(tools=True))
    shown = catalog_json(entry)
    assert set(shown) == set(CatalogEntry.__annotations__) == set(ModelCatalog.model_fields)
    assert set(shown["capabilities"]) == set(ModelCapabilities.__annotations__)
    assert shown == entry.model_dump()
