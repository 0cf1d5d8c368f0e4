"""Users are upserted by (issuer, subject) for every authenticated caller, and `/v1/auth/me`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness.issuer import TestIssuer
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.llm_api.auth_support import assert_error, new_subject, serve_llm_api, sql, user_headers


@pytest.fixture(scope="module")
def llm(database_url: str, issuer: TestIssuer) -> Iterator[str]:
    with serve_llm_api(database_url, auth=issuer.auth_settings()) as url:
        yield url


def rows(database_url: str, subject: str) -> list[dict[str, object]]:
    found = sql(database_url, "select * from users where subject = :subject", subject=subject)
    return [dict(row) for row in found]


def test_me_describes_the_caller_and_creates_one_row(llm: str, issuer: TestIssuer, database_url: str) -> None:
    subject = new_subject()
    headers = user_headers(issuer, subject, email="grace@example.com", name="Grace")
    first = httpx.get(f"{llm}/v1/auth/me", headers=headers, timeout=CLIENT_TIMEOUT)
    assert first.status_code == 200
    me = first.json()
    assert me["object"] == "user" and me["id"].startswith("user_")
    assert me["subject"] == subject and me["issuer"] == issuer.issuer
    assert me["email"] == "grace@example.com" and me["name"] == "Grace"
    assert me["is_guest"] is False and me["auth_method"] == "jwt" and me["api_key_id"] is None

    for _ in range(3):
        assert (
            httpx.get(f"{llm}/v1/auth/me", headers=headers, timeout=CLIENT_TIMEOUT).json()["id"] == me["id"]
        )
    (row,) = rows(database_url, subject)
    assert row["public_id"] == me["id"] and row["issuer"] == issuer.issuer


def test_repeat_calls_do_not_write_and_profile_changes_do(
    llm: str, issuer: TestIssuer, database_url: str
) -> None:
    subject = new_subject()
    httpx.get(
        f"{llm}/v1/auth/me", headers=user_headers(issuer, subject, name="Ada"), timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    (before,) = rows(database_url, subject)
    httpx.get(
        f"{llm}/v1/auth/me", headers=user_headers(issuer, subject, name="Ada"), timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    (same,) = rows(database_url, subject)
    assert same["updated_at"] == before["updated_at"]  # served from the cache, no write

    renamed = httpx.get(
        f"{llm}/v1/auth/me", headers=user_headers(issuer, subject, name="Ada L."), timeout=CLIENT_TIMEOUT
    )
    assert renamed.json()["name"] == "Ada L."
    (after,) = rows(database_url, subject)
    assert after["name"] == "Ada L." and after["id"] == before["id"]


def test_repeat_guest_calls_do_not_write(llm: str, issuer: TestIssuer, database_url: str) -> None:
    # A guest token is checked against the row on every request (an upgrade elsewhere ends it at
    # once), with a read: the row is written once, not once per request.
    subject = new_subject()
    headers = user_headers(issuer, subject, roles=("guest",))
    httpx.get(f"{llm}/v1/auth/me", headers=headers, timeout=CLIENT_TIMEOUT).raise_for_status()
    (before,) = rows(database_url, subject)
    for _ in range(2):
        httpx.get(f"{llm}/v1/auth/me", headers=headers, timeout=CLIENT_TIMEOUT).raise_for_status()
    (same,) = rows(database_url, subject)
    assert before["is_guest"] is True and same["updated_at"] == before["updated_at"]


def test_every_authenticated_route_records_the_user(llm: str, issuer: TestIssuer, database_url: str) -> None:
    subject = new_subject()
    httpx.get(
        f"{llm}/v1/auth/api-keys", headers=user_headers(issuer, subject), timeout=CLIENT_TIMEOUT
    ).raise_for_status()
    assert len(rows(database_url, subject)) == 1


def test_unauthenticated_callers_leave_no_row(llm: str, issuer: TestIssuer, database_url: str) -> None:
    subject = new_subject()
    assert_error(
        httpx.get(f"{llm}/v1/auth/me", headers={"Authorization": "Bearer nope"}, timeout=CLIENT_TIMEOUT), 401
    )
    expired = {"Authorization": f"Bearer {issuer.mint_expired(subject)}"}
    assert_error(
        httpx.get(f"{llm}/v1/auth/me", headers=expired, timeout=CLIENT_TIMEOUT), 401, "invalid_token"
    )
    assert rows(database_url, subject) == []
