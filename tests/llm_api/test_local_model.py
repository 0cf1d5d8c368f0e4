"""End to end against the real local model: SmolLM2-135M-Instruct served by llama.cpp."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai.types.chat import ChatCompletionMessageParam

from apps.gateway.embedded import LOCAL_MODEL_ALIAS, local_model
from tests.harness.issuer import TestIssuer
from tests.llm_api.conftest import LlmApi, eventually, llm_api_settings, running_llm_api

pytestmark = pytest.mark.model
MODEL = f"local/{LOCAL_MODEL_ALIAS}"


@pytest.fixture(scope="module")
def local_api(database_url: str, issuer: TestIssuer) -> Iterator[LlmApi]:
    with local_model() as model_url:
        settings = llm_api_settings(
            database_url, issuer, default_provider_url=model_url, default_provider_name="local"
        )
        with running_llm_api(settings, issuer) as api:
            yield api


def test_local_model_answers_plain_and_streamed(local_api: LlmApi) -> None:
    token = local_api.token()
    client = local_api.client(token)
    assert MODEL in {m.id for m in client.models.list()}
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Name three colours."}]
    completion = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=24,
        temperature=0,
        stream=True,
        extra_body={"conversation": {}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    # llama-cpp-python's server ignores `stream_options.include_usage`, so no usage chunk here.
    conversation_id = (chunks[-1].model_extra or {})["conversation"]["id"]
    assert conversation_id.startswith("conv_")
    with local_api.http(token) as http:
        items = eventually(
            lambda: http.get(f"/v1/conversations/{conversation_id}/items", params={"order": "asc"}).json()[
                "data"
            ]
        )
    assert len(items) == 2 and items[1]["status"] == "completed"
    assert items[1]["content"][0]["text"] == text and items[1]["finish_reason"] in ("stop", "length")
