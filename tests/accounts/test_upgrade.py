"""Guest upgrade through the real apps: a guest owning one of each kind of data (conversation,
response, media object, file-search document, API key) becomes a registered account; every piece is
still there under the new identity, in the app that owns it; the guest's tokens are refused in all four
apps; and upgrading by linking a fresh login's identity keeps the data too."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx

from tests.accounts.support import browser_login
from tests.harness.mcp_client import mcp_session, payload
from tests.harness.upstream import FakeUpstream, Reply
from tests.llm_api.auth_support import assert_error, bearer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
DOCUMENT = "The guest's notes say the launch code word is periwinkle."
MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
# One authenticated request per app; a refused credential answers 401 in each.
PROBES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "llm-api": ("GET", "/v1/conversations", None),
    "response-api": ("GET", "/v1/responses/resp_nothing", None),
    "media-api": ("GET", "/v1/media", None),
    "mcp-tools": ("POST", "/v1/mcp", MCP_LIST),
}


async def guest_with_data(http: httpx.AsyncClient, gateway: str, upstream: FakeUpstream) -> dict[str, Any]:
    """A guest session that owns one of each kind of data; returns the guest's tokens and the ids."""
    login = await http.post("/v1/auth/guest-login")
    assert login.status_code == 201, login.text
    guest = login.json()
    auth = bearer(guest["access_token"])
    conversation = await http.post("/v1/conversations", json={"metadata": {"topic": "upgrade"}}, headers=auth)
    assert conversation.status_code == 200, conversation.text
    model = (await http.get("/v1/models", headers=auth)).json()["data"][0]["id"]
    upstream.enqueue(Reply(content="Stored for later."))
    response = await http.post("/v1/responses", json={"model": model, "input": "Remember me."}, headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "completed", response.text
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    media = await http.post(
        "/v1/media", json={"source": {"type": "data_url", "data_url": data_url}}, headers=auth
    )
    assert media.status_code in (200, 201), media.text
    key = await http.post("/v1/auth/api-keys", json={"name": "guest key"}, headers=auth)
    assert key.status_code == 201, key.text
    async with mcp_session(gateway, guest["access_token"]) as session:
        indexed = payload(
            await session.call_tool("file_search_index", {"document_id": "notes", "text": DOCUMENT})
        )
    assert indexed, indexed
    return {
        "guest": guest,
        "conversation": conversation.json()["id"],
        "response": response.json()["id"],
        "media": media.json()["id"],
        "key": key.json(),
    }


async def assert_owns_everything(
    http: httpx.AsyncClient, gateway: str, token: str, owned: dict[str, Any]
) -> None:
    auth = bearer(token)
    conversation = await http.get(f"/v1/conversations/{owned['conversation']}", headers=auth)
    assert conversation.status_code == 200, conversation.text
    response = await http.get(f"/v1/responses/{owned['response']}", headers=auth)
    assert response.status_code == 200 and response.json()["status"] == "completed", response.text
    media = await http.get(f"/v1/media/{owned['media']}", headers=auth)
    assert media.status_code == 200, media.text
    keys = (await http.get("/v1/auth/api-keys", headers=auth)).json()["data"]
    assert [k["id"] for k in keys] == [owned["key"]["id"]]
    # The guest's API key keeps working, now as the account (with the `user` role).
    as_key = await http.get("/v1/auth/me", headers=bearer(owned["key"]["key"]))
    assert as_key.status_code == 200 and as_key.json()["is_guest"] is False, as_key.text
    async with mcp_session(gateway, token) as session:
        found = payload(await session.call_tool("file_search_query", {"query": "launch code word"}))
    assert any(match["document_id"] == "notes" for match in found["results"]), found


async def assert_guest_refused_everywhere(http: httpx.AsyncClient, guest: dict[str, Any]) -> None:
    auth = bearer(guest["access_token"])
    # Other apps learn of the upgrade from llm-api's feed (bound: one second); the wait here is
    # generous only so a loaded machine cannot fail the test.
    pending = set(PROBES)
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        for app in sorted(pending):
            method, path, body = PROBES[app]
            answer = await http.request(method, path, json=body, headers=auth)
            if answer.status_code == 401:
                assert answer.json()["error"]["code"] == "guest_session_ended", answer.text
                pending.discard(app)
    assert not pending, f"the guest token still works in {sorted(pending)}"
    refresh = await http.post("/v1/auth/refresh", json={"refresh_token": guest["refresh_token"]})
    assert_error(refresh, 401, "invalid_refresh_token")


async def test_upgrade_with_email_and_password_keeps_all_five_kinds_of_data(
    gateway: str, upstream: FakeUpstream
) -> None:
    email, password = f"upgraded-{uuid.uuid4().hex[:8]}@example.test", "correct horse battery"
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        owned = await guest_with_data(http, gateway, upstream)
        guest = owned["guest"]
        # The guest token is in use in every app before the upgrade (so their caches know it).
        for method, path, body in PROBES.values():
            before = await http.request(method, path, json=body, headers=bearer(guest["access_token"]))
            assert before.status_code in (200, 404), before.text

        upgraded = await http.post(
            "/v1/auth/upgrade",
            json={"email": email, "password": password, "name": "Ada"},
            headers=bearer(guest["access_token"]),
        )
        assert upgraded.status_code == 200, upgraded.text
        account = upgraded.json()
        assert account["user"]["is_guest"] is False and account["user"]["email"] == email
        assert account["user"]["id"] == guest["user"]["id"]  # same user, same public id

        await assert_guest_refused_everywhere(http, guest)
        await assert_owns_everything(http, gateway, account["access_token"], owned)
        # Again after signing in through the browser login with the new credentials.
        with httpx.Client(base_url=gateway, timeout=60) as browser:
            signed_in = browser_login(browser, email, password)
        assert signed_in["user"]["id"] == guest["user"]["id"]
        await assert_owns_everything(http, gateway, signed_in["access_token"], owned)

        # Once is enough: the account is not a guest any more, and the old token cannot try again.
        again = await http.post(
            "/v1/auth/upgrade",
            json={"email": email, "password": password},
            headers=bearer(account["access_token"]),
        )
        assert_error(again, 409, "not_a_guest")


async def test_upgrade_by_linking_a_fresh_login_keeps_the_data(gateway: str, upstream: FakeUpstream) -> None:
    email, password = f"linked-{uuid.uuid4().hex[:8]}@example.test", "correct horse battery"
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        owned = await guest_with_data(http, gateway, upstream)
        guest = owned["guest"]
        with httpx.Client(base_url=gateway, timeout=60) as browser:
            login = browser_login(browser, email, password, action="register")
        linked = await http.post(
            "/v1/auth/upgrade", json={"id_token": login["id_token"]}, headers=bearer(guest["access_token"])
        )
        assert linked.status_code == 200, linked.text
        assert linked.json()["user"]["email"] == email
        await assert_guest_refused_everywhere(http, guest)
        await assert_owns_everything(http, gateway, linked.json()["access_token"], owned)
        # The login's credentials now sign in to the guest's account.
        with httpx.Client(base_url=gateway, timeout=60) as browser:
            signed_in = browser_login(browser, email, password)
        assert signed_in["user"]["id"] == guest["user"]["id"]


async def test_upgrade_refusals(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as http:
        guest = (await http.post("/v1/auth/guest-login")).json()
        auth = bearer(guest["access_token"])
        assert_error(await http.post("/v1/auth/upgrade", json={"email": "a@b.c"}), 401)
        assert_error(await http.post("/v1/auth/upgrade", json={"email": "a@b.c"}, headers=auth), 400)
        short = {"email": "a@b.c", "password": "short"}
        assert_error(await http.post("/v1/auth/upgrade", json=short, headers=auth), 400)
        forged = {"id_token": "eyJhbGciOiJub25lIn0.e30."}
        assert_error(await http.post("/v1/auth/upgrade", json=forged, headers=auth), 400, "invalid_id_token")
        with httpx.Client(base_url=gateway, timeout=60) as browser:
            taken = f"taken-{uuid.uuid4().hex[:8]}@example.test"
            browser_login(browser, taken, "correct horse battery", action="register")
        duplicate = {"email": taken, "password": "correct horse battery"}
        assert_error(await http.post("/v1/auth/upgrade", json=duplicate, headers=auth), 409, "email_taken")
        # The guest is still a guest after the refusals.
        assert (await http.get("/v1/auth/me", headers=auth)).json()["is_guest"] is True
