"""Guest upgrade in Keycloak mode, against a fake Keycloak speaking the admin REST and token protocols:
the guest's Keycloak user becomes the account in place (same id, hence the same subject and data)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness.keycloak import FakeKeycloak
from tests.harness.server import serve_fake
from tests.llm_api.auth_support import assert_error, bearer, serve_llm_api


@pytest.fixture(scope="module")
def keycloak() -> Iterator[FakeKeycloak]:
    with serve_fake(FakeKeycloak()) as fake:
        yield fake


@pytest.fixture(scope="module")
def llm(database_url: str, keycloak: FakeKeycloak) -> Iterator[str]:
    with serve_llm_api(
        database_url, auth=keycloak.auth_settings(), keycloak=keycloak.keycloak_settings()
    ) as url:
        yield url


def test_a_keycloak_guest_is_upgraded_in_place(llm: str, keycloak: FakeKeycloak) -> None:
    with httpx.Client(base_url=llm, timeout=30) as client:
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


def test_keycloak_refusals(llm: str, keycloak: FakeKeycloak) -> None:
    with httpx.Client(base_url=llm, timeout=30) as client:
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
        keycloak.admin_status = 500
        try:
            other = {"email": "other@example.test", "password": "correct horse"}
            assert_error(client.post("/v1/auth/upgrade", json=other, headers=second), 502, "upgrade_failed")
        finally:
            keycloak.reset()
