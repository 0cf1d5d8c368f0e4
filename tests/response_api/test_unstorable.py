"""response-api: text Postgres cannot store is a 400 naming the field; an impossible id is a 404."""

from __future__ import annotations

import json

import httpx

from tests.harness.response_api import MODEL
from tests.harness.upstream import FakeUpstream


def test_unstorable_text_and_impossible_ids(
    response_api_url: str, token: str, upstream: FakeUpstream
) -> None:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    with httpx.Client(base_url=response_api_url, headers=headers, timeout=30) as http:
        for body, param in [
            ({"model": MODEL, "input": "hi\x00"}, "input"),
            ({"model": MODEL, "input": [{"role": "user", "content": "a\ud800"}]}, "input.0.content"),
            ({"model": MODEL, "input": "hi", "instructions": "\x00"}, "instructions"),
            ({"model": MODEL, "input": "hi", "metadata": {"k": "\x00"}}, "metadata.k"),
        ]:
            response = http.post("/v1/responses", content=json.dumps(body).encode())
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == param
        for path in ("/v1/responses/%00", "/v1/responses/resp_%00", "/v1/responses/%00/input_items"):
            response = http.get(path)
            assert response.status_code == 404, response.text
        assert http.delete("/v1/responses/%00").status_code == 404
        assert http.post("/v1/responses/%00/cancel").status_code == 404
        anonymous = http.post("/v1/responses", content=b"{not json", headers={"Authorization": ""})
        assert anonymous.status_code == 401, anonymous.text
    assert upstream.requests == []


def test_a_surrogate_encoded_in_the_body_s_bytes_is_a_400(
    response_api_url: str, token: str, upstream: FakeUpstream
) -> None:
    """Not an escape but the bytes ED A0 80: invalid UTF-8 that the body's parser decodes anyway
    (into a string no write can encode: the response was a 500, `storage_failed`)."""
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    raw = b'{"model": "%s", "input": "a \xed\xa0\x80 b"}' % MODEL.encode()
    with httpx.Client(base_url=response_api_url, headers=headers, timeout=30) as http:
        response = http.post("/v1/responses", content=raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "input"
    assert upstream.requests == []


def test_max_output_tokens_below_one_is_a_400(
    response_api_url: str, token: str, upstream: FakeUpstream
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=response_api_url, headers=headers, timeout=30) as http:
        for value in (0, -1, "many"):
            body = {"model": MODEL, "input": "hi", "max_output_tokens": value}
            response = http.post("/v1/responses", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["param"] == "max_output_tokens"
    assert upstream.requests == []
