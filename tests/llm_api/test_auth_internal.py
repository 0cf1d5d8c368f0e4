"""The internal key check other services call, including through the kit's own remote resolver."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from apps.common.auth.remote_keys import RemoteAPIKeyResolver
from tests.harness.issuer import TestIssuer
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import INTERNAL_TOKEN, assert_error, new_subject, serve_llm_api, user_headers


@pytest.fixture(scope="module")
def llm(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    auth = issuer.auth_settings(internal_token=SecretStr(INTERNAL_TOKEN))
    with serve_llm_api(database_url, auth=auth) as url:
        yield url


def new_key(llm: str, headers: dict[str, str]) -> dict[str, str]:
    response = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "svc"}, headers=headers, timeout=CLIENT_TIMEOUT
    )
    response.raise_for_status()
    body: dict[str, str] = response.json()
    return body


def validate(llm: str, api_key: object, token: str | None = INTERNAL_TOKEN) -> httpx.Response:
    headers = {"X-Internal-Token": token} if token is not None else {}
    return httpx.post(
        f"{llm}/internal/api-keys/validate",
        json={"api_key": api_key},
        headers=headers,
        timeout=CLIENT_TIMEOUT,
    )


def test_valid_key_answers_the_shape_remote_resolvers_read(llm: str, issuer: TestIssuer) -> None:
    subject = new_subject()
    created = new_key(llm, user_headers(issuer, subject, email="svc@example.com", name="Svc"))
    response = validate(llm, created["key"])
    assert response.status_code == 200
    assert response.json() == {
        "subject": subject,
        "issuer": issuer.issuer,
        "roles": ["user"],
        "email": "svc@example.com",
        "name": "Svc",
        "key_id": created["id"],
    }


def test_invalid_revoked_or_malformed_keys_are_401(llm: str, issuer: TestIssuer) -> None:
    headers = user_headers(issuer)
    created = new_key(llm, headers)
    assert_error(validate(llm, "sk_live_" + "0" * 48), 401, "invalid_api_key")
    assert_error(validate(llm, "not-a-key"), 401, "invalid_api_key")
    httpx.delete(
        f"{llm}/v1/auth/api-keys/{created['id']}", headers=headers, timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    assert_error(validate(llm, created["key"]), 401, "invalid_api_key")
    assert_error(validate(llm, 12345), 400)


def test_internal_token_is_required(llm: str, issuer: TestIssuer) -> None:
    created = new_key(llm, user_headers(issuer))
    assert_error(validate(llm, created["key"], token=None), 403)
    assert_error(validate(llm, created["key"], token="guess"), 403, "forbidden")
    # A user's own credentials do not open the internal endpoint either.
    response = httpx.post(
        f"{llm}/internal/api-keys/validate",
        json={"api_key": created["key"]},
        headers=user_headers(issuer),
        timeout=CLIENT_TIMEOUT,
    )
    assert_error(response, 403)


def test_unset_internal_token_refuses_everyone(database_url: str, issuer: TestIssuer) -> None:
    with serve_llm_api(database_url, auth=issuer.auth_settings()) as url:
        key = new_key(url, user_headers(issuer))["key"]
        assert_error(validate(url, key), 403)
        assert_error(validate(url, key, token=""), 403)


async def test_remote_resolver_of_other_services_accepts_and_refuses(llm: str, issuer: TestIssuer) -> None:
    subject = new_subject()
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        created_response = await client.post(
            f"{llm}/v1/auth/api-keys", json={"name": "svc"}, headers=user_headers(issuer, subject)
        )
        created = created_response.json()
        # Closed before the client, as the apps do: a valid key started the revocation poller.
        async with contextlib.aclosing(
            RemoteAPIKeyResolver(
                url=f"{llm}/internal/api-keys/validate", client=client, internal_token=INTERNAL_TOKEN
            )
        ) as resolver:
            principal = await resolver.resolve(created["key"])
            assert principal is not None
            assert principal.subject == subject and principal.api_key_id == created["id"]
            assert principal.auth_method == "api_key" and principal.roles == frozenset({"user"})
            assert await resolver.resolve("sk_live_unknown") is None
