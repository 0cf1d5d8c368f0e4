"""The revocation feed the other apps' key caches follow, and the kit's resolver following it."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from apps.common.auth.remote_keys import RemoteAPIKeyResolver
from tests.harness.issuer import TestIssuer
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import INTERNAL_TOKEN, assert_error, serve_llm_api, sql, user_headers

INTERNAL = {"X-Internal-Token": INTERNAL_TOKEN}


@pytest.fixture(scope="module")
def llm(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    auth = issuer.auth_settings(internal_token=SecretStr(INTERNAL_TOKEN))
    with serve_llm_api(database_url, auth=auth) as url:
        yield url


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def feed(llm: str, since: float, headers: dict[str, str] = INTERNAL) -> httpx.Response:
    return httpx.get(
        f"{llm}/internal/api-keys/revocations",
        params={"since": since},
        headers=headers,
        timeout=CLIENT_TIMEOUT,
    )


def test_feed_names_revoked_and_expired_keys(llm: str, issuer: TestIssuer, database_url: str) -> None:
    headers = user_headers(issuer)
    started = time.time()
    revoked = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "r"}, headers=headers, timeout=CLIENT_TIMEOUT
    ).json()
    expired = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "e"}, headers=headers, timeout=CLIENT_TIMEOUT
    ).json()
    live = httpx.post(
        f"{llm}/v1/auth/api-keys", json={"name": "l"}, headers=headers, timeout=CLIENT_TIMEOUT
    ).json()
    httpx.delete(
        f"{llm}/v1/auth/api-keys/{revoked['id']}", headers=headers, timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    sql(database_url, "update api_keys set expires_at = now() where public_id = :id", id=expired["id"])
    answer = feed(llm, started)
    assert answer.status_code == 200, answer.text
    names = set(answer.json()["revoked"])
    assert {digest(revoked["key"]), digest(expired["key"])} <= names
    assert digest(live["key"]) not in names
    assert answer.json()["until"] >= started - 5


def test_feed_needs_the_internal_token(llm: str, issuer: TestIssuer) -> None:
    assert_error(feed(llm, 0, headers={}), 403)
    assert_error(feed(llm, 0, headers=user_headers(issuer)), 403)


async def test_resolver_drops_a_revoked_key_without_waiting_for_its_ttl(llm: str, issuer: TestIssuer) -> None:
    headers = user_headers(issuer)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        created = (await client.post(f"{llm}/v1/auth/api-keys", json={"name": "c"}, headers=headers)).json()
        resolver = RemoteAPIKeyResolver(
            url=f"{llm}/internal/api-keys/validate",
            client=client,
            internal_token=INTERNAL_TOKEN,
            ttl_seconds=3600,
        )
        try:
            assert await resolver.resolve(created["key"]) is not None
            assert await resolver.resolve(created["key"]) is not None  # from the cache
            (
                await client.delete(f"{llm}/v1/auth/api-keys/{created['id']}", headers=headers)
            ).raise_for_status()
            deadline = time.monotonic() + 10  # generous for a loaded machine; the bound is 1 s
            while await resolver.resolve(created["key"]) is not None:
                assert time.monotonic() < deadline, "revoked key still accepted"
                await asyncio.sleep(0.05)
        finally:
            await resolver.aclose()


async def test_a_cached_key_is_not_trusted_while_the_feed_is_unreachable(
    llm: str, issuer: TestIssuer
) -> None:
    """No feed, no stale yes: the key is asked about again (and then found revoked)."""
    headers = user_headers(issuer)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        created = (await client.post(f"{llm}/v1/auth/api-keys", json={"name": "f"}, headers=headers)).json()
        resolver = RemoteAPIKeyResolver(
            url=f"{llm}/internal/api-keys/validate",
            client=client,
            internal_token=INTERNAL_TOKEN,
            ttl_seconds=3600,
            feed_url=f"{llm}/internal/nothing-here",  # a feed that answers 404
        )
        try:
            assert await resolver.resolve(created["key"]) is not None
            (
                await client.delete(f"{llm}/v1/auth/api-keys/{created['id']}", headers=headers)
            ).raise_for_status()
            deadline = time.monotonic() + 10
            while await resolver.resolve(created["key"]) is not None:
                assert time.monotonic() < deadline, "revoked key still accepted"
                await asyncio.sleep(0.05)
        finally:
            await resolver.aclose()
