"""Resolve hands out a recent presigned URL again: still valid the promised TTL, and only its owner's."""

from __future__ import annotations

import calendar
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from apps.media_api.main import create_app
from apps.media_api.services.url_cache import PresignedUrls
from tests.harness.issuer import TestIssuer
from tests.harness.media import settings_for, unique_png, uploaded
from tests.harness.server import serve
from tests.media_api.test_resolve_cache import resolve

TTL = 300  # MEDIA_S3_PRESIGN_TTL's default, which the test app keeps
REUSE = 60


def image_urls(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    parts = response.json()["payload"]["messages"][1]["content"][1:]
    return [part["image_url"]["url"] for part in parts]


def seconds_left(url: str) -> float:
    query = parse_qs(urlsplit(url).query)
    signed = calendar.timegm(time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"))
    return signed + int(query["X-Amz-Expires"][0]) - time.time()


async def test_a_resolved_url_is_handed_out_again_and_outlives_the_ttl(
    alice: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    png = unique_png()
    media_id = await uploaded(alice, png)
    [first] = image_urls(await resolve(alice, media_id))
    [again] = image_urls(await resolve(alice, media_id))
    assert again == first
    assert seconds_left(again) > TTL  # what a fresh URL would give, whatever turn gets it
    assert (await web.get(again)).content == png


async def test_a_handed_out_url_stays_its_owners(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    png = unique_png()
    hers, his = await uploaded(alice, png), await uploaded(bob, png)  # the same bytes, two owners
    [her_url] = image_urls(await resolve(alice, hers))
    refused = await resolve(bob, hers)
    assert refused.status_code == 404 and her_url not in refused.text
    [his_url] = image_urls(await resolve(bob, his))
    assert urlsplit(his_url).path != urlsplit(her_url).path  # his own object, not hers
    assert (await web.get(his_url)).content == png


async def test_a_deleted_media_gives_no_url_after_its_url_was_handed_out(alice: httpx.AsyncClient) -> None:
    media_id = await uploaded(alice, unique_png())
    image_urls(await resolve(alice, media_id))
    assert (await alice.delete(f"/v1/media/{media_id}")).status_code in (200, 204)
    gone = await resolve(alice, media_id)
    assert gone.status_code == 404 and "X-Amz-Signature" not in gone.text


async def test_a_url_reused_by_another_replica_never_outlives_a_deletion(
    alice: httpx.AsyncClient, database_url: str, s3_endpoint: str, issuer: TestIssuer
) -> None:
    """URL reuse alone (the ready-id cache off) never answers for an id: the id is looked up first."""
    settings = settings_for(database_url, s3_endpoint, issuer, media_resolve_cache_seconds=0)
    with serve(create_app(settings)) as replica:
        async with httpx.AsyncClient(
            base_url=replica.url, headers={"Authorization": alice.headers["Authorization"]}, timeout=30
        ) as on_replica:
            media_id = await uploaded(alice, unique_png())
            [url] = image_urls(await resolve(on_replica, media_id))
            assert image_urls(await resolve(on_replica, media_id)) == [url]  # reused there
            assert (await alice.delete(f"/v1/media/{media_id}")).status_code in (200, 204)
            gone = await resolve(on_replica, media_id)
    assert gone.status_code == 404 and url not in gone.text


class Signer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, key: str, expires_in: int) -> str:
        self.calls.append((key, expires_in))
        return f"https://bucket.example/{key}?n={len(self.calls)}&X-Amz-Expires={expires_in}"


def test_urls_are_reused_only_while_young_enough() -> None:
    now = [1000.0]
    sign = Signer()
    urls = PresignedUrls(sign, TTL, REUSE, clock=lambda: now[0])
    first = urls.get("alice", "media/1.png")
    assert sign.calls == [("media/1.png", TTL + REUSE + 1)]  # the second lost to X-Amz-Date's rounding
    now[0] += REUSE - 0.001
    assert urls.get("alice", "media/1.png") == first  # TTL + 1.001 s of it left
    now[0] += 0.001
    assert urls.get("alice", "media/1.png") != first
    assert len(sign.calls) == 2


def test_urls_are_per_owner_and_bounded() -> None:
    sign = Signer()
    urls = PresignedUrls(sign, TTL, REUSE, max_entries=2)
    assert urls.get("alice", "media/1.png") != urls.get("bob", "media/1.png")
    assert len(sign.calls) == 2
    urls.get("alice", "media/2.png")  # past the bound: starts over rather than grow
    urls.get("alice", "media/2.png")
    urls.get("alice", "media/1.png")
    assert [key for key, _ in sign.calls] == ["media/1.png"] * 2 + ["media/2.png", "media/1.png"]


def test_no_reuse_signs_every_url_for_the_ttl() -> None:
    sign = Signer()
    urls = PresignedUrls(sign, TTL, 0.0)
    assert urls.get("alice", "media/1.png") != urls.get("alice", "media/1.png")
    assert sign.calls == [("media/1.png", TTL)] * 2


def test_a_fractional_reuse_still_leaves_the_ttl() -> None:
    sign = Signer()
    PresignedUrls(sign, TTL, 0.5).get("alice", "media/1.png")
    assert sign.calls == [("media/1.png", TTL + 2)]
