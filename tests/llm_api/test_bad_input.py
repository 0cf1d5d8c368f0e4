"""Bad requests get a clear 4xx in the OpenAI envelope, never a 500."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream


def assert_envelope(
    response: Any, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


def test_malformed_json(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    with llm_api.http() as http:
        response = http.post(
            "/v1/chat/completions",
            content=b'{"model": "x", "messages": [',
            headers={"content-type": "application/json"},
        )
        assert_envelope(response, 400, code="invalid_json")
        assert_envelope(
            http.post("/v1/chat/completions", json=["not", "an", "object"]), 400, code="invalid_json"
        )
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_required_parameter"),
        ({"model": FAKE_MODEL}, "messages", "missing_required_parameter"),
        ({"model": FAKE_MODEL, "messages": []}, "messages", "invalid_value"),
        ({"model": FAKE_MODEL, "messages": "hi"}, "messages", "invalid_value"),
        ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model", "invalid_value"),
        (
            {"model": FAKE_MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
            "messages.0.role",
            "invalid_value",
        ),
        (
            {"model": FAKE_MODEL, "messages": [{"role": "user", "content": 7}]},
            "messages.0.content",
            "invalid_value",
        ),
        (
            {"model": FAKE_MODEL, "messages": [{"role": "assistant", "tool_calls": ["call it"]}]},
            "messages.0.tool_calls.0",
            "invalid_value",
        ),
        (
            {
                "model": FAKE_MODEL,
                "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": "f"}]}],
            },
            "messages.0.tool_calls.0.function",
            "invalid_value",
        ),
        (
            {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
            "stream",
            "invalid_value",
        ),
        (
            {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}], "conversation": 5},
            "conversation",
            "invalid_value",
        ),
    ],
)
def test_wrong_or_missing_fields(
    llm_api: LlmApi, upstream: FakeUpstream, body: dict[str, Any], param: str, code: str
) -> None:
    with llm_api.http() as http:
        assert_envelope(http.post("/v1/chat/completions", json=body), 400, param=param, code=code)
    assert upstream.requests == []


def test_unknown_model_is_404(llm_api: LlmApi) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        llm_api.client().chat.completions.create(
            model="nobody/nothing", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 404
    assert "nobody/nothing" in caught.value.message
    assert caught.value.code == "model_not_found"


def test_oversized_body_is_413(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    huge = "x" * (5 * 1024 * 1024)
    with llm_api.http() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": FAKE_MODEL, "messages": [{"role": "user", "content": huge}]},
        )
    assert_envelope(response, 413, code="request_too_large")
    assert upstream.requests == []


def test_missing_or_bad_credentials_are_401(llm_api: LlmApi) -> None:
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    with llm_api.http() as http:
        assert_envelope(http.post("/v1/chat/completions", json=body, headers={"Authorization": ""}), 401)
        assert_envelope(
            http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}), 401
        )
        assert_envelope(http.get("/v1/models", headers={"Authorization": ""}), 401)
        assert_envelope(http.get("/v1/conversations", headers={"Authorization": ""}), 401)


def test_another_users_conversation_is_404(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    with llm_api.http(llm_api.token("owner-1")) as owner:
        conversation_id = owner.post("/v1/conversations", json={"title": "mine"}).json()["id"]
    other = llm_api.token("intruder-1")
    with pytest.raises(openai.NotFoundError):
        llm_api.client(other).chat.completions.create(
            model=FAKE_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"conversation": conversation_id},
        )
    with llm_api.http(other) as http:
        assert_envelope(http.get(f"/v1/conversations/{conversation_id}"), 404)
        assert_envelope(http.get(f"/v1/conversations/{conversation_id}/items"), 404)
        assert_envelope(http.post(f"/v1/conversations/{conversation_id}", json={"title": "hijacked"}), 404)
        assert_envelope(http.delete(f"/v1/conversations/{conversation_id}"), 404)
        assert_envelope(
            http.post(
                f"/v1/conversations/{conversation_id}/items",
                json={"items": [{"role": "user", "content": "x"}]},
            ),
            404,
        )
    assert upstream.requests == []
    with llm_api.http(llm_api.token("owner-1")) as owner:
        assert owner.get(f"/v1/conversations/{conversation_id}").json()["title"] == "mine"


@pytest.mark.parametrize("depth", [300, 1000])
@pytest.mark.parametrize("stored", [False, True], ids=["unstored", "stored"])
def test_json_nested_too_deep_is_400(
    llm_api: LlmApi, upstream: FakeUpstream, depth: int, stored: bool
) -> None:
    """JSON that parses (orjson reads up to 1024 levels) but cannot be written back (255): a 400."""
    nested = "[" * depth + "]" * depth
    conversation = ', "conversation": {}' if stored else ""
    content = (
        f'{{"model": "{FAKE_MODEL}", "messages": [{{"role": "user", "content": "hi"}}], '
        f'"x_vendor": {nested}{conversation}}}'
    )
    with llm_api.http() as http:
        response = http.post(
            "/v1/chat/completions", content=content.encode(), headers={"content-type": "application/json"}
        )
    assert_envelope(response, 400, code="invalid_json")
    assert upstream.requests == []
