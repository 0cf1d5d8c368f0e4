"""`GET /v1/media/{id}/presign`: a fresh presigned GET URL and its expiry, for the owner only."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.harness.media import unique_png, uploaded
from tests.harness.waiting import eventually_async


async def test_owner_gets_a_url_that_downloads_the_object(
    alice: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    png = unique_png()
    media_id = await uploaded(alice, png)
    before = int(time.time())
    presigned = await alice.get(f"/v1/media/{media_id}/presign")
    assert presigned.status_code == 200, presigned.text
    body = presigned.json()
    assert body["id"] == media_id and body["object"] == "media.presigned_url"
    assert body["mime_type"] == "image/png" and body["expires_in"] == 300
    assert before + 300 <= body["expires_at"] <= int(time.time()) + 300
    assert parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"] == ["300"]
    fetched = await web.get(body["url"])
    assert fetched.status_code == 200 and fetched.content == png


async def test_each_call_signs_a_fresh_url(alice: httpx.AsyncClient) -> None:
    media_id = await uploaded(alice, unique_png())
    first = (await alice.get(f"/v1/media/{media_id}/presign")).json()
    # The signature covers the signing time (whole seconds): wait for the next second, not a duration.
    start = int(time.time())
    await eventually_async(lambda: int(time.time()) > start, "the clock reaches the next second")
    second = (await alice.get(f"/v1/media/{media_id}/presign")).json()
    assert second["url"] != first["url"] and second["expires_at"] > first["expires_at"]


async def test_another_users_media_is_not_found(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    media_id = await uploaded(alice, unique_png())
    foreign = await bob.get(f"/v1/media/{media_id}/presign")
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "media_not_found"
    assert "url" not in foreign.text
    assert (await alice.get("/v1/media/jan_123/presign")).status_code == 404
    assert (await alice.get("/v1/media/not-an-id/presign")).status_code == 404


async def test_an_unfinished_direct_upload_has_no_url_yet(alice: httpx.AsyncClient) -> None:
    reserved = await alice.post("/v1/media/prepare-upload", json={"mime_type": "image/png", "bytes": 10})
    assert reserved.status_code == 200, reserved.text
    pending = await alice.get(f"/v1/media/{reserved.json()['id']}/presign")
    assert pending.status_code == 409 and pending.json()["error"]["code"] == "media_not_ready"


async def test_expiry_follows_the_configured_ttl(alt: httpx.AsyncClient) -> None:
    media_id = await uploaded(alt, unique_png())
    body = (await alt.get(f"/v1/media/{media_id}/presign")).json()
    assert body["expires_in"] == 1
    assert parse_qs(urlsplit(body["url"]).query)["X-Amz-Expires"] == ["1"]
