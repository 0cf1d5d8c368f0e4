"""Guest login and refresh when llm-api is its own token issuer (local mode)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import openai
import pytest

from apps.common.settings import AuthSettings
from apps.gateway.embedded import free_port
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import assert_error, bearer, serve_llm_api


@pytest.fixture(scope="module")
def llm(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port("127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    auth = AuthSettings(issuer=base, audience="jan-api", jwks_url=f"{base}/.well-known/jwks.json")
    key_file: Path = tmp_path_factory.mktemp("issuer") / "issuer-key.pem"
    with serve_llm_api(database_url, port=port, auth=auth, local_issuer_key_file=key_file) as url:
        yield url


def guest_login(llm: str) -> dict[str, object]:
    response = httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, object] = response.json()
    return body


def test_guest_login_returns_working_tokens_for_a_new_guest(llm: str) -> None:
    login = guest_login(llm)
    assert login["token_type"] == "Bearer" and login["expires_in"] == 3600
    user = login["user"]
    assert isinstance(user, dict)
    assert user["is_guest"] is True and user["roles"] == ["guest"] and user["id"].startswith("user_")

    me = httpx.get(f"{llm}/v1/auth/me", headers=bearer(str(login["access_token"])), timeout=CLIENT_TIMEOUT)
    assert me.status_code == 200
    assert me.json()["id"] == user["id"] and me.json()["subject"] == user["subject"]

    other = guest_login(llm)
    assert isinstance(other["user"], dict) and other["user"]["subject"] != user["subject"]


def test_local_guest_may_hold_api_keys_acting_as_a_guest(llm: str) -> None:
    login = guest_login(llm)
    headers = bearer(str(login["access_token"]))
    created = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "dev"}, headers=headers, timeout=CLIENT_TIMEOUT
    )
    assert created.status_code == 201, created.text
    client = openai.OpenAI(api_key=created.json()["key"], base_url=f"{llm}/v1", max_retries=0)
    me = client.get("/auth/me", cast_to=httpx.Response).json()
    assert isinstance(login["user"], dict)
    assert me["subject"] == login["user"]["subject"] and me["roles"] == ["guest"]


def test_refresh_rotates_tokens_for_the_same_guest(llm: str) -> None:
    login = guest_login(llm)
    refreshed = httpx.post(
        f"{llm}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}, timeout=CLIENT_TIMEOUT
    )
    assert refreshed.status_code == 200
    tokens = refreshed.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["access_token"] != login["access_token"]

    me = httpx.get(f"{llm}/v1/auth/me", headers=bearer(tokens["access_token"]), timeout=CLIENT_TIMEOUT).json()
    assert isinstance(login["user"], dict)
    assert me["subject"] == login["user"]["subject"] and me["is_guest"] is True
    again = httpx.post(
        f"{llm}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=CLIENT_TIMEOUT
    )
    assert again.status_code == 200


def test_tokens_cannot_stand_in_for_each_other(llm: str) -> None:
    login = guest_login(llm)
    # An access token is not a refresh token, and a refresh token does not authenticate requests.
    as_refresh = httpx.post(
        f"{llm}/v1/auth/refresh", json={"refresh_token": login["access_token"]}, timeout=CLIENT_TIMEOUT
    )
    assert_error(as_refresh, 401, "invalid_refresh_token")
    as_access = httpx.get(
        f"{llm}/v1/auth/me", headers=bearer(str(login["refresh_token"])), timeout=CLIENT_TIMEOUT
    )
    assert_error(as_access, 401, "invalid_token")
    assert_error(
        httpx.post(f"{llm}/v1/auth/refresh", json={"refresh_token": "garbage"}, timeout=CLIENT_TIMEOUT), 401
    )


def test_refresh_token_of_another_issuer_is_refused(llm: str) -> None:
    claims = jwt.decode(str(guest_login(llm)["refresh_token"]), options={"verify_signature": False})
    forged = jwt.encode(claims, "not-our-key-but-long-enough-for-hmac-256!", algorithm="HS256")
    assert_error(
        httpx.post(f"{llm}/v1/auth/refresh", json={"refresh_token": forged}, timeout=CLIENT_TIMEOUT), 401
    )


@pytest.mark.parametrize(
    "body", [{}, {"refresh_token": 5}, {"refresh_token": ""}, {"refresh_token": "x", "grant": "y"}]
)
def test_bad_refresh_bodies_are_400(llm: str, body: object) -> None:
    assert_error(httpx.post(f"{llm}/v1/auth/refresh", json=body, timeout=CLIENT_TIMEOUT), 400)


def test_malformed_refresh_json_is_400(llm: str) -> None:
    response = httpx.post(
        f"{llm}/v1/auth/refresh",
        content=b"{",
        headers={"Content-Type": "application/json"},
        timeout=CLIENT_TIMEOUT,
    )
    assert_error(response, 400, "invalid_json")


def test_issuer_publishes_its_jwks(llm: str) -> None:
    keys = httpx.get(f"{llm}/.well-known/jwks.json", timeout=CLIENT_TIMEOUT).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA" and "d" not in keys[0]
