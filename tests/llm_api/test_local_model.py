"""End to end against the real local model, wired as `make dev` wires it.

SmolLM2-135M-Instruct under llama-cpp-python's server, supervised by `ModelSupervisor`, behind the
local gateway with all four apps; llm-api sees it as provider `local` of kind `llama_cpp_python`.
The module shares one model process; the test that kills it runs last.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from apps.common.auth.issuer import LocalIssuer
from apps.gateway.embedded import (
    LOCAL_MODEL_ALIAS,
    LOCAL_MODEL_CONTEXT,
    LOCAL_MODEL_KIND,
    local_model,
    local_model_catalog,
)
from apps.gateway.local_apps import LOCAL_AUDIENCE
from apps.gateway.model_server import ModelSupervisor
from tests.harness.server import serve_local
from tests.harness.waiting import eventually

pytestmark = pytest.mark.model
MODEL = f"local/{LOCAL_MODEL_ALIAS}"
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}


# Forcing a tool whose schema bounds a string to 2048 characters: llama-cpp-python's grammar for it
# is refused by llama.cpp, and the server process dies (issue 12).
GRAMMAR_CRASH: Any = {
    "model": LOCAL_MODEL_ALIAS,
    "messages": [{"role": "user", "content": "Read https://example.org"}],
    "max_tokens": 48,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "scrape",
                "parameters": {
                    "type": "object",
                    "properties": {"url": {"type": "string", "minLength": 1, "maxLength": 2048}},
                    "required": ["url"],
                },
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "scrape"}},
}


@dataclass
class Local:
    url: str
    token: str
    model: ModelSupervisor

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.token, max_retries=0, timeout=120)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)


@pytest.fixture(scope="module")
def local(database_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    data_dir: Path = tmp_path_factory.mktemp("local-model")
    with (
        local_model() as model,
        serve_local(
            database_url,
            s3_endpoint,
            data_dir,
            model_url=model.base_url,
            model_kind=LOCAL_MODEL_KIND,
            model_check=model.check,
            model_catalog=local_model_catalog(),
        ) as (url, env),
    ):
        issuer = LocalIssuer.from_key_file(data_dir / "issuer-key.pem", env.base_url, LOCAL_AUDIENCE)
        yield Local(url=url, token=issuer.mint("model-user"), model=model)


def test_local_model_answers_plain_and_streamed(local: Local) -> None:
    client = local.client()
    listed = {m.id: m for m in client.models.list()}
    described = listed[MODEL].model_extra or {}
    assert described["aliases"] == [LOCAL_MODEL_ALIAS]
    assert described["context_length"] == LOCAL_MODEL_CONTEXT and described["capabilities"]["tools"] is True
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24,
        temperature=0,
    )
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model=LOCAL_MODEL_ALIAS,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"conversation": {}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and not usage_chunks[0].choices
    usage = usage_chunks[0].usage
    assert usage is not None and 0 < usage.completion_tokens <= 24 and usage.prompt_tokens > 0
    conversation_id = (chunks[-1].model_extra or {})["conversation"]["id"]
    with local.http() as http:
        items = eventually(
            lambda: http.get(f"/v1/conversations/{conversation_id}/items", params={"order": "asc"}).json()[
                "data"
            ]
        )
    assert len(items) == 2 and items[1]["status"] == "completed"
    assert items[1]["content"][0]["text"] == text and items[1]["usage"]["completion_tokens"] > 0


def test_content_part_arrays(local: Local) -> None:
    completion = local.client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "You answer in one word."}]},
            {"role": "user", "content": [{"type": "text", "text": "What colour is the sky?"}]},
        ],
        max_tokens=8,
        temperature=0,
    )
    assert completion.choices[0].message.content


def test_a_forced_tool_call_round_trip_through_responses(local: Local) -> None:
    client = local.client()
    first = client.responses.create(
        model=LOCAL_MODEL_ALIAS,
        input="What is the weather in Hanoi?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
        temperature=0,
    )
    assert first.status == "completed", first
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments), dict)

    # The next round replays the assistant's tool call (content null) and the tool's output.
    second = client.responses.create(
        model=LOCAL_MODEL_ALIAS,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 31 C"}],
        tools=[WEATHER_TOOL],
        max_output_tokens=32,
        temperature=0,
    )
    assert second.status == "completed", second
    assert second.output_text.strip()
    assert second.usage is not None and second.usage.output_tokens > 0


def test_the_grammar_crash_request_is_answered_and_the_model_stays_up(local: Local) -> None:
    process = local.model.process
    assert process is not None
    client = local.client()
    completion = client.chat.completions.create(**GRAMMAR_CRASH)
    calls = completion.choices[0].message.tool_calls or []
    assert [call.function.name for call in calls] == ["scrape"]

    with pytest.raises(openai.BadRequestError) as caught:  # raw GBNF cannot be checked: refused
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            extra_body={"grammar": 'root ::= "a"{1,5000}'},
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "grammar"
    assert local.model.process is process and process.poll() is None
    assert httpx.get(f"{local.url}/readyz", timeout=10).status_code == 200


def test_the_crash_request_sent_around_llm_api_is_survived(local: Local) -> None:
    """Straight to the model server, the same request kills it; it is restarted and serves again."""
    restarts = local.model.restarts
    process = local.model.process
    assert process is not None
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{local.model.base_url}/chat/completions", json=GRAMMAR_CRASH, timeout=120)
    assert process.wait(timeout=60) != 0

    assert local.model.wait_restarted(after=restarts, timeout=120)
    completion = local.client().chat.completions.create(**GRAMMAR_CRASH)
    assert completion.choices[0].message.tool_calls


def test_a_killed_model_is_restarted_and_readiness_follows(local: Local) -> None:
    assert httpx.get(f"{local.url}/readyz", timeout=10).status_code == 200
    restarts = local.model.restarts
    process = local.model.process
    assert process is not None
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    down = httpx.get(f"{local.url}/readyz", timeout=10)
    assert down.status_code == 503
    assert down.json()["apps"]["llm-api"]["checks"]["model"]["status"] == "error"

    assert local.model.wait_restarted(after=restarts, timeout=120)
    assert httpx.get(f"{local.url}/readyz", timeout=10).status_code == 200
    completion = local.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello again"}], max_tokens=8
    )
    assert completion.choices[0].message.content is not None
