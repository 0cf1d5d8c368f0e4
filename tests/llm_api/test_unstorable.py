"""Text Postgres cannot store (NUL, unpaired surrogates) is a 400 naming the field, before any write;
an id that cannot exist is a 404; the caller is authenticated before the body is read."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness.llm_api import FAKE_MODEL, LlmApi
from tests.harness.upstream import FakeUpstream
from tests.llm_api.test_bad_input import assert_envelope

NUL = "a\x00b"
SURROGATE = "a\ud800b"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # stdlib escapes NUL and lone surrogates as \u0000 / \ud800


def post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    return http.post(path, content=_json(body), headers={"content-type": "application/json"})


def conversation_count(http: httpx.Client) -> int:
    return len(http.get("/v1/conversations", params={"limit": 100}).json()["data"])


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"title": "{bad}"}, "title"),
        ({"metadata": {"k": "{bad}"}}, "metadata.k"),
        ({"metadata": {"{bad}": "v"}}, "metadata"),
        ({"items": [{"role": "user", "content": "{bad}"}]}, "items.0.content"),
        (
            {"items": [{"role": "user", "content": [{"type": "input_text", "text": "{bad}"}]}]},
            "items.0.content.0.text",
        ),
    ],
)
def test_create_conversation_refuses_unstorable_text(
    llm_api: LlmApi, bad: str, body: dict[str, Any], param: str
) -> None:
    filled = _fill(body, bad)
    with llm_api.http() as http:
        before = conversation_count(http)
        assert_envelope(post(http, "/v1/conversations", filled), 400, param=param, code="invalid_value")
        assert conversation_count(http) == before


def test_update_and_append_refuse_unstorable_text(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        conversation = http.post("/v1/conversations", json={"title": "fine"}).json()["id"]
        assert_envelope(post(http, f"/v1/conversations/{conversation}", {"title": NUL}), 400, param="title")
        assert_envelope(
            post(http, f"/v1/conversations/{conversation}", {"metadata": {"x": NUL}}), 400, param="metadata.x"
        )
        items = {"items": [{"role": "user", "content": "ok"}, {"role": "user", "content": NUL}]}
        assert_envelope(
            post(http, f"/v1/conversations/{conversation}/items", items), 400, param="items.1.content"
        )
        assert http.get(f"/v1/conversations/{conversation}").json()["title"] == "fine"
        assert http.get(f"/v1/conversations/{conversation}/items").json()["data"] == []


def test_an_escaped_backslash_is_ordinary_text(llm_api: LlmApi) -> None:
    """`"\\\\u0000"` is a backslash followed by `u0000`: storable, and stored as sent."""
    with llm_api.http() as http:
        created = post(http, "/v1/conversations", {"title": "a\\u0000b"})
        assert created.status_code == 200, created.text
        assert created.json()["title"] == "a\\u0000b"


def test_an_escaped_surrogate_pair_is_ordinary_text(llm_api: LlmApi) -> None:
    """An emoji escaped as a surrogate pair (`\\ud83d\\ude00`, what `ensure_ascii` JSON sends) is fine."""
    with llm_api.http() as http:
        created = post(http, "/v1/conversations", {"title": "hi \U0001f600"})
        assert created.status_code == 200, created.text
        assert created.json()["title"] == "hi \U0001f600"


def test_ids_and_cursors_that_cannot_exist(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        conversation = http.post("/v1/conversations", json={}).json()["id"]
        assert_envelope(http.get("/v1/conversations/%00"), 404, code="not_found")
        assert_envelope(http.get("/v1/conversations/conv_%00x"), 404)
        assert_envelope(http.delete("/v1/conversations/%00"), 404)
        assert_envelope(post(http, "/v1/conversations/%00", {"title": "x"}), 404)
        assert_envelope(http.get(f"/v1/conversations/{conversation}/items/%00"), 404)
        assert_envelope(http.delete(f"/v1/conversations/{conversation}/items/%00"), 404)
        assert_envelope(http.get("/v1/conversations?after=a%00"), 400, param="after")
        assert_envelope(http.get(f"/v1/conversations/{conversation}/items?after=a%00"), 400, param="after")
        assert_envelope(http.delete("/v1/auth/api-keys/%00"), 404)


def test_api_key_name(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        before = len(http.get("/v1/auth/api-keys").json()["data"])
        assert_envelope(post(http, "/v1/auth/api-keys", {"name": NUL}), 400, param="name")
        assert len(http.get("/v1/auth/api-keys").json()["data"]) == before


def test_chat_refuses_unstorable_text_before_anything_happens(
    llm_api: LlmApi, upstream: FakeUpstream
) -> None:
    with llm_api.http() as http:
        before = conversation_count(http)
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "conversation": {"title": NUL},
        }
        assert_envelope(post(http, "/v1/chat/completions", body), 400, param="conversation.title")
        body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": NUL}], "conversation": {}}
        assert_envelope(post(http, "/v1/chat/completions", body), 400, param="messages.0.content")
        body = {
            "model": FAKE_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "conversation": "conv_\x00",
        }
        assert_envelope(post(http, "/v1/chat/completions", body), 400, param="conversation")
        assert conversation_count(http) == before
    assert upstream.requests == []


def test_credentials_are_checked_before_the_body(llm_api: LlmApi, upstream: FakeUpstream) -> None:
    anonymous = {"content-type": "application/json", "authorization": ""}
    with llm_api.http() as http:
        for path in ("/v1/chat/completions", "/v1/conversations", "/v1/auth/api-keys"):
            malformed = http.post(path, content=b'{"model": "x", "messages": [', headers=anonymous)
            assert_envelope(malformed, 401)
            unstorable = http.post(path, content=_json({"title": NUL}), headers=anonymous)
            assert_envelope(unstorable, 401)
            wrong = http.post(path, content=b"[1, 2]", headers={**anonymous, "authorization": "Bearer nope"})
            assert_envelope(wrong, 401)
        assert_envelope(http.get("/v1/conversations/%00", headers={"authorization": ""}), 401)
    assert upstream.requests == []


def _fill(value: Any, bad: str) -> Any:
    if isinstance(value, str):
        return value.replace("{bad}", bad)
    if isinstance(value, dict):
        return {_fill(k, bad): _fill(v, bad) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, bad) for v in value]
    return value
