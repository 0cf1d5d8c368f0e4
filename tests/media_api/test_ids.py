"""Snowflake ids across concurrent uploads: unique, and ordered by the time they were issued."""

from __future__ import annotations

import asyncio
import time

import httpx

from apps.common.ids import parse_jan_id, snowflake_timestamp_ms
from tests.harness.media import data_url, unique_png, uploaded


async def upload_many(client: httpx.AsyncClient, count: int) -> list[str]:
    return list(await asyncio.gather(*(uploaded(client, unique_png()) for _ in range(count))))


async def test_ids_are_unique_and_time_ordered(alice: httpx.AsyncClient) -> None:
    started_ms = time.time_ns() // 1_000_000
    first = await upload_many(alice, 16)
    between_ms = time.time_ns() // 1_000_000
    second = await upload_many(alice, 16)
    ended_ms = time.time_ns() // 1_000_000

    numbers = [parse_jan_id(i) for i in first + second]
    assert all(n is not None for n in numbers)
    values = [n for n in numbers if n is not None]
    assert len(set(values)) == len(values)
    assert max(values[:16]) < min(values[16:])  # a later batch always sorts after an earlier one
    for value in values[:16]:
        assert started_ms <= snowflake_timestamp_ms(value) <= between_ms
    for value in values[16:]:
        assert between_ms <= snowflake_timestamp_ms(value) <= ended_ms

    listed = (await alice.get("/v1/media", params={"limit": 100})).json()["data"]
    listed_ids = [m["id"] for m in listed]
    assert sorted(first + second, key=lambda i: -int(i[4:])) == listed_ids


async def test_concurrent_uploads_of_the_same_bytes_end_in_one_object(
    alice: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    png = unique_png()
    request = {"source": {"type": "data_url", "data_url": data_url(png)}}
    results = [
        r.json() for r in await asyncio.gather(*(alice.post("/v1/media", json=request) for _ in range(8)))
    ]
    assert len({r["id"] for r in results}) == 1
    assert [r["deduplicated"] for r in results].count(False) == 1

    other = unique_png()
    uploads = []
    for _ in range(4):
        prepared = await alice.post(
            "/v1/media/prepare-upload", json={"mime_type": "image/png", "bytes": len(other)}
        )
        upload = prepared.json()
        await web.put(upload["upload_url"], content=other, headers=upload["headers"])
        uploads.append(upload["id"])
    completed = await asyncio.gather(*(alice.post(f"/v1/media/{i}/complete") for i in uploads))
    assert all(c.status_code == 200 for c in completed), [c.text for c in completed]
    bodies = [c.json() for c in completed]
    assert len({b["id"] for b in bodies}) == 1 and [b["deduplicated"] for b in bodies].count(False) == 1
    listed = [m["id"] for m in (await alice.get("/v1/media", params={"limit": 100})).json()["data"]]
    winner = bodies[0]["id"]
    losers = set(uploads) - {winner}
    assert listed.count(winner) == 1 and not losers & set(listed)
