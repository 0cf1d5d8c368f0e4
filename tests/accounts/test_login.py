"""Browser login (OpenID Connect authorization code + PKCE) against the local identity provider, with
an HTTP client that follows redirects; and what it refuses: a forged state, a replayed code, a
foreign redirect URI, a wrong PKCE verifier."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.accounts.conftest import LANDING
from tests.accounts.support import browser_login, open_login, query_of, submit
from tests.llm_api.auth_support import assert_error, bearer


def new_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.test"


def test_the_full_login_flow_registers_signs_in_and_refreshes(gateway: str) -> None:
    email = new_email()
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client)
        authorize = page.history[0].headers["location"]
        request = query_of(authorize)
        assert authorize.startswith(f"{gateway}/oidc/authorize?")
        assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) == 43
        assert request["redirect_uri"] == f"{gateway}/v1/auth/callback"
        assert "code_verifier" not in authorize  # the verifier never leaves the server

        registered = submit(client, page, email, "correct horse", action="register")
        assert registered.status_code == 200, registered.text
        body = registered.json()
        assert body["token_type"] == "Bearer" and body["id_token"] and body["refresh_token"]
        assert body["user"]["is_guest"] is False and body["user"]["email"] == email
        assert registered.headers["cache-control"] == "no-store"

        me = client.get("/v1/auth/me", headers=bearer(body["access_token"]))
        assert me.status_code == 200 and me.json()["id"] == body["user"]["id"]
        # The same account signs in again through the form, and its tokens work in every app.
        again = browser_login(client, email, "correct horse")
        assert again["user"]["id"] == body["user"]["id"]
        assert client.get("/v1/media", headers=bearer(again["access_token"])).status_code == 200
        refreshed = client.post("/v1/auth/refresh", json={"refresh_token": again["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text


def test_a_wrong_password_shows_the_form_again(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client)
        refused = submit(client, page, "nobody@example.test", "wrong password")
        assert refused.status_code == 401 and "Wrong email or password" in refused.text


def test_an_allowed_target_gets_the_tokens_in_the_fragment(gateway: str) -> None:
    email = new_email()
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client, target=LANDING)
        done = submit(client, page, email, "correct horse", action="register", follow=False)
        callback = client.get(done.headers["location"])
        assert callback.status_code == 303, callback.text
        location = urlsplit(callback.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == LANDING
        assert location.query == ""  # tokens only in the fragment, which no server sees
        tokens = {key: values[0] for key, values in parse_qs(location.fragment).items()}
        assert set(tokens) >= {"access_token", "refresh_token", "id_token", "expires_in"}
        assert client.get("/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200


def test_a_foreign_redirect_target_is_refused(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        for target in ("https://evil.example/steal", f"{LANDING}.evil.example", f"{LANDING}/../x"):
            refused = client.get("/v1/auth/login", params={"redirect_uri": target})
            error = assert_error(refused, 400)
            assert error["param"] == "redirect_uri"
        # The provider too refuses a redirect URI its client did not register, without redirecting.
        page = open_login(client)
        request = query_of(str(page.url))
        request["redirect_uri"] = "https://evil.example/callback"
        refused = client.get("/oidc/authorize", params=request)
        assert_error(refused, 400)
        assert "location" not in refused.headers


def test_a_forged_state_is_refused(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client)
        done = submit(client, page, new_email(), "correct horse", action="register", follow=False)
        code = query_of(done.headers["location"])["code"]
        forged = client.get("/v1/auth/callback", params={"code": code, "state": "forged-state"})
        assert_error(forged, 400, "invalid_state")
        assert_error(client.get("/v1/auth/callback", params={"code": code}), 400)
        provider_error = client.get("/v1/auth/callback", params={"state": "x", "error": "access_denied"})
        assert_error(provider_error, 400, "login_failed")


def test_a_replayed_callback_or_code_is_refused(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client)
        done = submit(client, page, new_email(), "correct horse", action="register", follow=False)
        callback = done.headers["location"]
        first = client.get(callback)
        assert first.status_code == 200, first.text
        # The same callback again: its state was used up.
        assert_error(client.get(callback), 400, "invalid_state")
        # The used code under a fresh, genuine state: the provider refuses the code.
        fresh_state = query_of(str(open_login(client).url))["state"]
        replayed = client.get(
            "/v1/auth/callback", params={"code": query_of(callback)["code"], "state": fresh_state}
        )
        assert_error(replayed, 400, "invalid_grant")
        # Replaying a code ends the session it opened: its refresh token stops working.
        refresh = client.post("/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
        assert_error(refresh, 401, "invalid_refresh_token")


def test_the_provider_requires_the_pkce_verifier(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=30) as client:
        page = open_login(client)
        request = query_of(str(page.url))
        done = submit(client, page, new_email(), "correct horse", action="register", follow=False)
        form = {
            "grant_type": "authorization_code",
            "client_id": request["client_id"],
            "redirect_uri": request["redirect_uri"],
            "code": query_of(done.headers["location"])["code"],
            "code_verifier": "not-the-verifier-" + "x" * 40,
        }
        refused = client.post("/oidc/token", data=form)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        # And no authorization request without an S256 challenge.
        del request["code_challenge"]
        assert_error(client.get("/oidc/authorize", params=request), 400)


def test_logout_ends_the_session_and_revoke_kills_a_refresh_token(gateway: str) -> None:
    email = new_email()
    with httpx.Client(base_url=gateway, timeout=30) as client:
        first = browser_login(client, email, "correct horse", action="register")
        second = browser_login(client, email, "correct horse")

        revoked = client.post("/v1/auth/revoke", json={"refresh_token": first["refresh_token"]})
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        refused = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert_error(refused, 401, "invalid_refresh_token")

        # Logout ends the second login's session: every refresh token of it, rotated ones included.
        rotated = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).json()
        ended = client.post("/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
        assert ended.status_code == 200 and ended.json()["status"] == "logged_out"
        for token in (second["refresh_token"], rotated["refresh_token"]):
            refused = client.post("/v1/auth/refresh", json={"refresh_token": token})
            assert_error(refused, 401, "invalid_refresh_token")
        assert_error(client.post("/v1/auth/logout", json={"refresh_token": "junk"}), 401)
        assert_error(client.post("/v1/auth/logout", json={}), 400)
