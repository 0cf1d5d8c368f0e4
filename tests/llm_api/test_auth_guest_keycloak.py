"""Guest login, refresh and guest upgrade against a fake Keycloak speaking the admin REST and OIDC token
protocols. Upgrade: the guest's Keycloak user becomes the account in place (same id, hence the same
subject and data)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from apps.gateway.embedded import free_port
from tests.harness.keycloak import FakeKeycloak
from tests.harness.server import serve_fake
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import assert_error, bearer, serve_llm_api


@pytest.fixture(scope="module")
def keycloak_server() -> Iterator[FakeKeycloak]:
    with serve_fake(FakeKeycloak()) as fake:
        yield fake


@pytest.fixture
def keycloak(keycloak_server: FakeKeycloak) -> FakeKeycloak:
    keycloak_server.reset()
    return keycloak_server


@pytest.fixture(scope="module")
def llm(database_url: str, keycloak_server: FakeKeycloak) -> Iterator[str]:
    with serve_llm_api(
        database_url, auth=keycloak_server.auth_settings(), keycloak=keycloak_server.keycloak_settings()
    ) as url:
        yield url


def test_guest_login_provisions_a_keycloak_guest(llm: str, keycloak: FakeKeycloak) -> None:
    response = httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT)
    assert response.status_code == 201, response.text
    login = response.json()
    user = login["user"]
    assert login["token_type"] == "Bearer" and login["expires_in"] == keycloak.access_ttl
    assert user["is_guest"] is True and "guest" in user["roles"] and user["issuer"] == keycloak.issuer

    created = keycloak.users[user["subject"]]
    assert created["username"].startswith("guest-") and created["attributes"] == {"guest": ["true"]}
    assert keycloak.role_mappings[user["subject"]] == {"guest"}

    me = httpx.get(f"{llm}/v1/auth/me", headers=bearer(login["access_token"]), timeout=CLIENT_TIMEOUT)
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    refused = httpx.post(
        f"{llm}/v1/auth/api-keys",
        json={"name": "k"},
        headers=bearer(login["access_token"]),
        timeout=CLIENT_TIMEOUT,
    )
    assert_error(refused, 403, "guest_not_allowed")


def test_service_account_token_is_reused(llm: str, keycloak: FakeKeycloak) -> None:
    for _ in range(2):
        assert httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT).status_code == 201
    token_calls = [path for _, path in keycloak.calls if path.endswith("/token")]
    # One token exchange per login, and at most one service-account login for both.
    assert 2 <= len(token_calls) <= 3


def test_refresh_goes_through_keycloak(llm: str, keycloak: FakeKeycloak) -> None:
    login = httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT).json()
    refreshed = httpx.post(
        f"{llm}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}, timeout=CLIENT_TIMEOUT
    )
    assert refreshed.status_code == 200, refreshed.text
    tokens = refreshed.json()
    me = httpx.get(f"{llm}/v1/auth/me", headers=bearer(tokens["access_token"]), timeout=CLIENT_TIMEOUT).json()
    assert me["subject"] == login["user"]["subject"]

    refused = httpx.post(f"{llm}/v1/auth/refresh", json={"refresh_token": "forged"}, timeout=CLIENT_TIMEOUT)
    assert_error(refused, 401, "invalid_refresh_token")


def test_admin_api_failure_is_a_502(llm: str, keycloak: FakeKeycloak) -> None:
    keycloak.admin_status = 500
    error = assert_error(
        httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT), 502, "guest_provisioning_failed"
    )
    assert error["type"] == "upstream_error"


def test_token_endpoint_down_is_a_503(llm: str, keycloak: FakeKeycloak) -> None:
    login = httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT).json()
    keycloak.token_status = 503
    assert_error(
        httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT), 503, "identity_provider_unavailable"
    )
    refresh = httpx.post(
        f"{llm}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}, timeout=CLIENT_TIMEOUT
    )
    assert_error(refresh, 503, "identity_provider_unavailable")


def test_unreachable_keycloak_is_a_503(database_url: str, keycloak: FakeKeycloak) -> None:
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    settings = keycloak.keycloak_settings(base_url=closed, timeout_seconds=2.0)
    with serve_llm_api(database_url, auth=keycloak.auth_settings(), keycloak=settings) as url:
        assert_error(
            httpx.post(f"{url}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT),
            503,
            "identity_provider_unavailable",
        )


@pytest.mark.parametrize(
    "overrides",
    [{"backend_client_secret": "wrong"}, {"guest_role": "no-such-role"}],
)
def test_misconfigured_keycloak_is_a_502(
    database_url: str, keycloak: FakeKeycloak, overrides: dict[str, str]
) -> None:
    settings = keycloak.keycloak_settings(**overrides)
    with serve_llm_api(database_url, auth=keycloak.auth_settings(), keycloak=settings) as url:
        assert_error(
            httpx.post(f"{url}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT), 502, "guest_provisioning_failed"
        )


def test_tokens_for_another_audience_are_caught_at_login(database_url: str, keycloak: FakeKeycloak) -> None:
    auth = keycloak.auth_settings(audience="some-other-api")
    with serve_llm_api(database_url, auth=auth, keycloak=keycloak.keycloak_settings()) as url:
        assert_error(
            httpx.post(f"{url}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT), 502, "identity_misconfigured"
        )


def test_a_keycloak_guest_is_upgraded_in_place(llm: str, keycloak: FakeKeycloak) -> None:
    with httpx.Client(base_url=llm, timeout=CLIENT_TIMEOUT) as client:
        guest = client.post("/v1/auth/guest-login").json()
        auth = bearer(guest["access_token"])
        conversation = client.post("/v1/conversations", json={}, headers=auth).json()["id"]
        upgraded = client.post(
            "/v1/auth/upgrade",
            json={"email": "ada@example.test", "password": "correct horse", "name": "Ada"},
            headers=auth,
        )
        assert upgraded.status_code == 200, upgraded.text
        account = upgraded.json()
        assert account["user"]["id"] == guest["user"]["id"] and account["user"]["is_guest"] is False

        subject = guest["user"]["subject"]
        user = keycloak.users[subject]
        assert user["email"] == "ada@example.test" and user["attributes"] == {"guest": ["false"]}
        assert keycloak.passwords[subject] == "correct horse"
        assert "guest" not in keycloak.role_mappings.get(subject, set())

        # The guest's tokens stop working: the access token here, the refresh token at Keycloak.
        assert_error(client.get("/v1/conversations", headers=auth), 401, "guest_session_ended")
        refused = client.post("/v1/auth/refresh", json={"refresh_token": guest["refresh_token"]})
        assert_error(refused, 401, "invalid_refresh_token")
        # The account's tokens (no guest role) see the guest's data.
        mine = client.get(f"/v1/conversations/{conversation}", headers=bearer(account["access_token"]))
        assert mine.status_code == 200, mine.text
        me = client.get("/v1/auth/me", headers=bearer(account["access_token"])).json()
        assert "guest" not in me["roles"] and me["email"] == "ada@example.test"
        assert account["user"]["roles"] == me["roles"]  # what the new token says, not a made-up role


def test_keycloak_upgrade_refusals(llm: str, keycloak: FakeKeycloak) -> None:
    with httpx.Client(base_url=llm, timeout=CLIENT_TIMEOUT) as client:
        first = client.post("/v1/auth/guest-login").json()
        body = {"email": "taken@example.test", "password": "correct horse"}
        assert (
            client.post("/v1/auth/upgrade", json=body, headers=bearer(first["access_token"])).status_code
            == 200
        )
        second = bearer(client.post("/v1/auth/guest-login").json()["access_token"])
        assert_error(client.post("/v1/auth/upgrade", json=body, headers=second), 409, "email_taken")
        # Linking a login needs the local provider: refused as such, before the token is even read.
        link = client.post("/v1/auth/upgrade", json={"id_token": "x.y.z"}, headers=second)
        assert_error(link, 501, "link_unavailable")
        # Browser login is not configured in this server: a clear 501, not a crash.
        assert_error(client.get("/v1/auth/login"), 501, "login_unavailable")
        keycloak.admin_status = 500  # the fixture resets it for the next test
        other = {"email": "other@example.test", "password": "correct horse"}
        assert_error(client.post("/v1/auth/upgrade", json=other, headers=second), 502, "upgrade_failed")
