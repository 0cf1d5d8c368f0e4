"""OpenAI's known request fields are type-checked by llm-api (a 400 naming the field, the model never
asked); unknown fields still reach the provider; a provider's 4xx for a field names it too."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream, Reply
from tests.llm_api.test_bad_input import assert_envelope

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.5}, "top_p"),
        ({"tools": "x"}, "tools"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools.0.function.name"),
        ({"tool_choice": "maybe"}, "tool_choice"),
        ({"response_format": {"type": "nope"}}, "response_format.type"),
        ({"response_format": "json"}, "response_format"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"n": 100}, "n"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 9}, "presence_penalty"),
        ({"seed": "x"}, "seed"),
        ({"logit_bias": {"50256": "no"}}, "logit_bias.50256"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options"),
        ({"parallel_tool_calls": "true"}, "parallel_tool_calls"),
        ({"user": 5}, "user"),
    ],
)
def test_known_fields_are_type_checked(
    llm_api: LlmApi, upstream: FakeUpstream, extra: dict[str, Any], param: str
) -> None:
    with llm_api.http() as http:
        response = http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI, **extra})
    error = assert_envelope(response, 400, param=param)
    assert error["code"] in ("invalid_value", "missing_required_parameter")
    assert upstream.requests == []


def test_valid_fields_and_unknown_fields_reach_the_provider(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    extra = {
        "temperature": 0.2,
        "top_p": 1,
        "n": 1,
        "max_tokens": 16,
        "stop": "\n",
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
        "logit_bias": {"50256": -100},
        "vendor_extension": {"anything": ["goes"]},
    }
    with llm_api.http() as http:
        response = http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI, **extra})
    assert response.status_code == 200, response.text
    [sent] = upstream.requests
    for key, value in extra.items():
        assert sent[key] == value


def test_n_above_one_is_refused_clearly(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    with llm_api.http() as http:
        response = http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI, "n": 2})
    error = assert_envelope(response, 400, param="n")
    assert "n=1" in error["message"]
    assert upstream.requests == []


def test_provider_rejection_of_a_field_names_it(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Reply(
            status=400,
            error_body={
                "error": {"message": "bad bias", "type": "invalid_request_error", "param": "logit_bias"}
            },
        ),
        Reply(status=422, error_body={"detail": [{"loc": ["body", "top_k"], "msg": "bad", "type": "x"}]}),
    )
    with llm_api.http() as http:
        first = http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI})
        second = http.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": HI, "top_k": -3})
    error = assert_envelope(first, 400, param="logit_bias", code="upstream_bad_request")
    assert "bad bias" in error["message"]
    assert_envelope(second, 400, param="top_k", code="upstream_bad_request")
