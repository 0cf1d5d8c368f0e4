"""API keys behave the same in all four apps: a malformed key is a 401 everywhere, and a revoked key
is refused everywhere at once (not after the other apps' key-cache lifetime)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.server import serve_local

MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
# One authenticated request per app, answered 200 (or 404 for an id nobody has) when the key is good.
PROBES: dict[str, tuple[str, str, dict[str, object] | None, int]] = {
    "llm-api": ("GET", "/v1/conversations", None, 200),
    "response-api": ("GET", "/v1/responses/resp_nothing", None, 404),
    "media-api": ("GET", "/v1/media", None, 200),
    "mcp-tools": ("POST", "/v1/mcp", MCP_LIST, 200),
}


@pytest.fixture(scope="module")
def gateway(database_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = Path(tmp_path_factory.mktemp("keys-everywhere"))
    with serve_local(database_url, s3_endpoint, data_dir, internal_token="keys-everywhere") as (url, _):
        yield url


def probe(client: httpx.Client, app: str, key: str) -> httpx.Response:
    method, path, body, _ = PROBES[app]
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})


def session(client: httpx.Client) -> dict[str, str]:
    login = client.post("/v1/auth/guest-login")
    assert login.status_code == 201, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.mark.parametrize("app", sorted(PROBES))
@pytest.mark.parametrize(
    "key",
    ["sk_" + "a" * 254, "sk_" + "a" * 4000, "sk_", "sk_live_!!", "sk_live_a.b", "sk_" + "0" * 48],
    ids=["overlong", "huge", "prefix-only", "punctuation", "dot", "unknown"],
)
def test_a_malformed_or_unknown_key_is_401_in_every_app(gateway: str, app: str, key: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        response = probe(client, app, key)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"
        x_api_key = client.get("/v1/media", headers={"X-API-Key": key})
        assert x_api_key.status_code == 401


def test_a_revoked_key_is_refused_everywhere_at_once(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        headers = session(client)
        created = client.post("/v1/auth/api-keys", json={"name": "everywhere"}, headers=headers)
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        for app, (*_, ok) in PROBES.items():
            # Twice: the second answer comes from the app's key cache.
            assert probe(client, app, key).status_code == ok, app
            assert probe(client, app, key).status_code == ok, app
        revoked = client.delete(f"/v1/auth/api-keys/{key_id}", headers=headers)
        assert revoked.status_code == 200, revoked.text
        # The caches hold the key for 30 s; it must be refused long before (the bound is 1 s; the
        # wait here is generous only so a loaded machine cannot fail the test).
        pending = set(PROBES)
        deadline = time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            pending = {app for app in pending if probe(client, app, key).status_code != 401}
        assert not pending, f"still accepted by {sorted(pending)}"
