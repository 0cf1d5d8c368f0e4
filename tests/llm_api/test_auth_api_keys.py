"""API keys end to end: create, use through both headers (and the official openai client), list
without secrets, revoke, expire, the per-user limit, ownership, and who may manage keys."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import openai
import pytest

from apps.llm_api.auth.settings import APIKeySettings
from tests.harness.issuer import TestIssuer
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import assert_error, bearer, new_subject, serve_llm_api, sql, user_headers

MAX_KEYS = 3


@pytest.fixture(scope="module")
def llm(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    with serve_llm_api(
        database_url,
        auth=issuer.auth_settings(),
        api_keys=APIKeySettings(max_per_user=MAX_KEYS, max_ttl_days=30),
    ) as url:
        yield url


def create_key(
    llm: str, headers: dict[str, str], name: str = "laptop", **fields: object
) -> dict[str, object]:
    response = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": name, **fields}, headers=headers, timeout=CLIENT_TIMEOUT
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def openai_client(llm: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{llm}/v1", max_retries=0)


def me_with(client: openai.OpenAI) -> dict[str, object]:
    body: dict[str, object] = client.get("/auth/me", cast_to=httpx.Response).json()
    return body


def test_created_key_is_shown_once_and_listed_without_its_secret(
    llm: str, issuer: TestIssuer, database_url: str
) -> None:
    headers = user_headers(issuer)
    created = create_key(llm, headers, name="ci runner", expires_in_days=7)
    secret = str(created["key"])
    assert secret.startswith("sk_live_") and len(secret) == len("sk_live_") + 48
    assert created["object"] == "api_key" and created["status"] == "active"
    assert str(created["id"]).startswith("key_")
    assert created["prefix"] == secret[:12] and created["suffix"] == secret[-4:]
    assert int(str(created["expires_at"])) - int(str(created["created_at"])) == 7 * 86400

    listing = httpx.get(f"{llm}/v1/auth/api-keys", headers=headers, timeout=CLIENT_TIMEOUT)
    assert listing.status_code == 200
    body = listing.json()
    assert body["object"] == "list" and [item["id"] for item in body["data"]] == [created["id"]]
    assert "key" not in body["data"][0] and secret not in listing.text

    stored = sql(database_url, "select key_hash from api_keys where public_id = :id", id=created["id"])
    assert stored[0]["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_key_authenticates_through_bearer_and_x_api_key(llm: str, issuer: TestIssuer) -> None:
    subject = new_subject()
    secret = str(create_key(llm, user_headers(issuer, subject, email="ada@example.com"))["key"])

    me = me_with(openai_client(llm, secret))  # the SDK sends `Authorization: Bearer sk_…`
    assert me["subject"] == subject and me["auth_method"] == "api_key"
    assert me["email"] == "ada@example.com" and me["roles"] == ["user"]

    response = httpx.get(f"{llm}/v1/auth/me", headers={"X-API-Key": secret}, timeout=CLIENT_TIMEOUT)
    assert response.status_code == 200 and response.json()["subject"] == subject

    assert_error(
        httpx.get(f"{llm}/v1/auth/me", headers={"X-API-Key": secret + "x"}, timeout=CLIENT_TIMEOUT),
        401,
        "invalid_api_key",
    )


def test_revoked_key_is_refused(llm: str, issuer: TestIssuer) -> None:
    headers = user_headers(issuer)
    created = create_key(llm, headers)
    client = openai_client(llm, str(created["key"]))
    me_with(client)

    deleted = httpx.delete(f"{llm}/v1/auth/api-keys/{created['id']}", headers=headers, timeout=CLIENT_TIMEOUT)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": created["id"], "object": "api_key.deleted", "deleted": True}

    with pytest.raises(openai.AuthenticationError):
        me_with(client)
    listed = httpx.get(f"{llm}/v1/auth/api-keys", headers=headers, timeout=CLIENT_TIMEOUT).json()["data"]
    assert listed[0]["status"] == "revoked" and listed[0]["revoked_at"] is not None


def test_expired_key_is_refused(llm: str, issuer: TestIssuer, database_url: str) -> None:
    headers = user_headers(issuer)
    created = create_key(llm, headers, expires_in_days=1)
    secret = str(created["key"])
    assert (
        httpx.get(f"{llm}/v1/auth/me", headers={"X-API-Key": secret}, timeout=CLIENT_TIMEOUT).status_code
        == 200
    )

    sql(
        database_url,
        "update api_keys set expires_at = now() - interval '1 second' where public_id = :id",
        id=created["id"],
    )
    assert_error(
        httpx.get(f"{llm}/v1/auth/me", headers=bearer(secret), timeout=CLIENT_TIMEOUT), 401, "invalid_api_key"
    )
    listed = httpx.get(f"{llm}/v1/auth/api-keys", headers=headers, timeout=CLIENT_TIMEOUT).json()["data"]
    assert listed[0]["status"] == "expired"


def test_expiry_is_bounded(llm: str, issuer: TestIssuer) -> None:
    headers = user_headers(issuer)
    too_long = httpx.post(
        f"{llm}/v1/auth/api-keys",
        json={"name": "k", "expires_in_days": 31},
        headers=headers,
        timeout=CLIENT_TIMEOUT,
    )
    assert assert_error(too_long, 400)["param"] == "expires_in_days"
    zero = httpx.post(
        f"{llm}/v1/auth/api-keys",
        json={"name": "k", "expires_in_days": 0},
        headers=headers,
        timeout=CLIENT_TIMEOUT,
    )
    assert assert_error(zero, 400)["param"] == "expires_in_days"
    default = create_key(llm, headers)
    assert int(str(default["expires_at"])) - int(str(default["created_at"])) == 30 * 86400  # capped default


def test_per_user_limit(llm: str, issuer: TestIssuer) -> None:
    headers = user_headers(issuer)
    keys = [create_key(llm, headers, name=f"key {n}") for n in range(MAX_KEYS)]
    over = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "one more"}, headers=headers, timeout=CLIENT_TIMEOUT
    )
    assert_error(over, 400, "api_key_limit_reached")

    # Someone else is not affected, and revoking one frees a slot.
    create_key(llm, user_headers(issuer))
    httpx.delete(
        f"{llm}/v1/auth/api-keys/{keys[0]['id']}", headers=headers, timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    create_key(llm, headers, name="replacement")


def test_another_users_key_is_not_found(llm: str, issuer: TestIssuer) -> None:
    owner = user_headers(issuer)
    created = create_key(llm, owner)
    stranger = user_headers(issuer)

    assert_error(
        httpx.delete(f"{llm}/v1/auth/api-keys/{created['id']}", headers=stranger, timeout=CLIENT_TIMEOUT),
        404,
        "not_found",
    )
    assert httpx.get(f"{llm}/v1/auth/api-keys", headers=stranger, timeout=CLIENT_TIMEOUT).json()["data"] == []
    assert (
        httpx.get(
            f"{llm}/v1/auth/me", headers={"X-API-Key": str(created["key"])}, timeout=CLIENT_TIMEOUT
        ).status_code
        == 200
    )
    assert_error(
        httpx.delete(f"{llm}/v1/auth/api-keys/key_missing", headers=owner, timeout=CLIENT_TIMEOUT), 404
    )


def test_guests_and_api_keys_cannot_create_keys(llm: str, issuer: TestIssuer) -> None:
    guest = user_headers(issuer, roles=("guest",))
    refused = httpx.post(f"{llm}/v1/auth/api-keys", json={"name": "k"}, headers=guest, timeout=CLIENT_TIMEOUT)
    assert_error(refused, 403, "guest_not_allowed")

    headers = user_headers(issuer)
    created = create_key(llm, headers)
    with_key = {"X-API-Key": str(created["key"])}
    assert_error(
        httpx.post(f"{llm}/v1/auth/api-keys", json={"name": "k"}, headers=with_key, timeout=CLIENT_TIMEOUT),
        403,
        "session_required",
    )
    assert_error(
        httpx.delete(f"{llm}/v1/auth/api-keys/{created['id']}", headers=with_key, timeout=CLIENT_TIMEOUT), 403
    )
    assert httpx.get(f"{llm}/v1/auth/api-keys", headers=with_key, timeout=CLIENT_TIMEOUT).status_code == 200


def test_last_used_at_is_recorded_without_a_write_per_request(
    llm: str, issuer: TestIssuer, database_url: str
) -> None:
    headers = user_headers(issuer)
    created = create_key(llm, headers)
    assert created["last_used_at"] is None
    client = openai_client(llm, str(created["key"]))

    me_with(client)
    first = sql(database_url, "select last_used_at from api_keys where public_id = :id", id=created["id"])
    assert first[0]["last_used_at"] is not None
    for _ in range(3):
        me_with(client)
    again = sql(database_url, "select last_used_at from api_keys where public_id = :id", id=created["id"])
    assert again[0]["last_used_at"] == first[0]["last_used_at"]  # within the interval: no new write
    listed = httpx.get(f"{llm}/v1/auth/api-keys", headers=headers, timeout=CLIENT_TIMEOUT).json()["data"]
    assert listed[0]["last_used_at"] == int(first[0]["last_used_at"].timestamp())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": 5}, "name"),
        ({"name": "k", "expires_in_days": "ten"}, "expires_in_days"),
        ({"name": "k", "expires_in_days": "10"}, "expires_in_days"),
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": "k", "scopes": ["all"]}, "scopes"),
    ],
)
def test_bad_input_is_a_400_envelope(llm: str, issuer: TestIssuer, body: object, param: str) -> None:
    response = httpx.post(
        f"{llm}/v1/auth/api-keys", json=body, headers=user_headers(issuer), timeout=CLIENT_TIMEOUT
    )
    assert assert_error(response, 400)["param"] == param


def test_malformed_json_and_missing_credentials(llm: str, issuer: TestIssuer) -> None:
    headers = {**user_headers(issuer), "Content-Type": "application/json"}
    malformed = httpx.post(
        f"{llm}/v1/auth/api-keys", content=b'{"name": ', headers=headers, timeout=CLIENT_TIMEOUT
    )
    assert_error(malformed, 400, "invalid_json")
    assert_error(httpx.get(f"{llm}/v1/auth/api-keys", timeout=CLIENT_TIMEOUT), 401)
    assert_error(httpx.post(f"{llm}/v1/auth/api-keys", json={"name": "k"}, timeout=CLIENT_TIMEOUT), 401)


def test_guest_login_without_an_issuer_is_501(llm: str) -> None:
    assert_error(
        httpx.post(f"{llm}/v1/auth/guest-login", timeout=CLIENT_TIMEOUT), 501, "guest_login_unavailable"
    )
    assert_error(
        httpx.post(f"{llm}/v1/auth/refresh", json={"refresh_token": "x"}, timeout=CLIENT_TIMEOUT), 501
    )
