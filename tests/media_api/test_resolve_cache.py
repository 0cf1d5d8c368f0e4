"""Resolve remembers ready ids for a few seconds: the answers stay exactly the query's answers."""

from __future__ import annotations

import asyncio

import httpx

from apps.common.db import create_engine
from apps.gateway.embedded import free_port
from apps.media_api.main import create_app
from apps.media_api.services.ready_cache import ReadyKeyCache
from tests.harness.issuer import TestIssuer
from tests.harness.media import settings_for, unique_png, uploaded
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.media_api.test_resolve import chat_payload


async def resolve(client: httpx.AsyncClient, *ids: str) -> httpx.Response:
    return await client.post("/v1/media/resolve", json={"payload": chat_payload(*ids)})


async def test_a_resolved_id_stays_its_owners(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    media_id = await uploaded(alice, unique_png())
    assert (await resolve(alice, media_id)).status_code == 200
    refused = await resolve(bob, media_id)
    assert refused.status_code == 404 and media_id in refused.json()["error"]["message"]
    assert (await resolve(alice, media_id)).status_code == 200


async def test_a_deleted_id_stops_resolving_at_once(alice: httpx.AsyncClient) -> None:
    media_id = await uploaded(alice, unique_png())
    assert (await resolve(alice, media_id)).status_code == 200
    assert (await alice.delete(f"/v1/media/{media_id}")).status_code in (200, 204)
    gone = await resolve(alice, media_id)
    assert gone.status_code == 404 and media_id in gone.json()["error"]["message"]


async def test_remembered_and_new_ids_resolve_together(alice: httpx.AsyncClient) -> None:
    known = await uploaded(alice, unique_png())
    assert (await resolve(alice, known)).status_code == 200
    fresh = await uploaded(alice, unique_png())
    both = await resolve(alice, known, fresh, "jan_1")
    assert both.status_code == 404 and "'jan_1'" in both.json()["error"]["message"]
    assert known not in both.json()["error"]["message"] and fresh not in both.json()["error"]["message"]
    assert (await resolve(alice, known, fresh)).status_code == 200


def test_entries_expire_and_are_per_owner() -> None:
    now = [100.0]
    cache = ReadyKeyCache(10.0, clock=lambda: now[0])
    cache.remember("alice", {1: "media/1.png"})
    assert cache.split("alice", {1, 2}) == ({1: "media/1.png"}, {2})
    assert cache.split("bob", {1}) == ({}, {1})
    now[0] += 10.0
    assert cache.split("alice", {1}) == ({}, {1})


def test_forget_and_the_size_bound() -> None:
    cache = ReadyKeyCache(10.0, max_entries=2)
    cache.remember("alice", {1: "a", 2: "b"})
    cache.forget("alice", 1)
    assert cache.split("alice", {1, 2}) == ({2: "b"}, {1})
    cache.remember("alice", {3: "c", 4: "d"})  # past the bound: starts over rather than grow
    assert cache.split("alice", {2, 3, 4}) == ({3: "c", 4: "d"}, {2})


def test_a_zero_ttl_remembers_nothing() -> None:
    cache = ReadyKeyCache(0.0)
    cache.remember("alice", {1: "a"})
    assert cache.split("alice", {1}) == ({}, {1})


async def test_an_unfinished_direct_upload_does_not_resolve(alice: httpx.AsyncClient) -> None:
    reserved = await alice.post("/v1/media/prepare-upload", json={"mime_type": "image/png", "bytes": 100})
    assert reserved.status_code == 200, reserved.text
    pending = reserved.json()["id"]
    refused = await resolve(alice, pending)
    assert refused.status_code == 404 and pending in refused.json()["error"]["message"]


def test_a_lookup_the_database_cannot_answer_is_a_503(
    database_url: str, s3_endpoint: str, issuer: TestIssuer
) -> None:
    app = create_app(settings_for(database_url, s3_endpoint, issuer))
    with serve(app) as server:
        dead = create_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none", schema="media_api")
        app.state.media.engine = dead  # the lookup's pool now reaches nothing
        try:
            answer = httpx.post(
                f"{server.url}/v1/media/resolve",
                json={"payload": chat_payload("jan_12345")},
                headers={"Authorization": f"Bearer {issuer.mint('carol')}"},
                timeout=CLIENT_TIMEOUT,
            )
        finally:
            asyncio.run(dead.dispose())
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5", answer.text
