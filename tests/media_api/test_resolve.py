"""`/v1/media/resolve` as llm-api calls it: `{"payload": {...}}` in, the same shape out."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import httpx
import pytest

from apps.common.errors import APIError
from apps.media_api.services.media import MediaService
from apps.media_api.services.resolve import Resolver
from apps.media_api.services.storage import ObjectStore
from tests.harness.media import JPEG, unique_png, uploaded


def chat_payload(*ids: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "What is in these pictures? data:image/png is fine."}
    ]
    parts += [
        {"type": "image_url", "image_url": {"url": f"data:image/png;{i}", "detail": "low"}} for i in ids
    ]
    return {
        "model": "m",
        "temperature": 0.5,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": parts},
            {"role": "user", "content": "inline: data:image/png;base64,iVBORw0KGgo="},
        ],
    }


async def test_placeholders_become_presigned_urls(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png, jpeg = unique_png(), JPEG + b"resolve"
    first, second = await uploaded(alice, png), await uploaded(alice, jpeg, "image/jpeg")
    payload = chat_payload(first, second, first)
    response = await alice.post("/v1/media/resolve", json={"payload": payload})
    assert response.status_code == 200, response.text
    resolved = response.json()["payload"]

    expected = copy.deepcopy(payload)
    urls = [part["image_url"]["url"] for part in resolved["messages"][1]["content"][1:]]
    for part, url in zip(expected["messages"][1]["content"][1:], urls, strict=True):
        part["image_url"]["url"] = url
    assert resolved == expected  # nothing else changed
    assert all(url.startswith("http") and "X-Amz-Signature=" in url for url in urls)
    assert (await web.get(urls[0])).content == png
    assert (await web.get(urls[1])).content == jpeg
    assert urls[0] == urls[2]


async def test_payload_without_placeholders_is_unchanged(alice: httpx.AsyncClient) -> None:
    payload = chat_payload()
    response = await alice.post("/v1/media/resolve", json={"payload": payload})
    assert response.status_code == 200 and response.json() == {"payload": payload}
    scalar = await alice.post("/v1/media/resolve", json={"payload": "just text"})
    assert scalar.json() == {"payload": "just text"}


async def test_unknown_ids_are_named(alice: httpx.AsyncClient) -> None:
    known = await uploaded(alice, unique_png())
    response = await alice.post("/v1/media/resolve", json={"payload": chat_payload(known, "jan_12345")})
    assert response.status_code == 404
    error = response.json()["error"]
    assert "jan_12345" in error["message"] and known not in error["message"]
    assert error["code"] == "media_not_found"


async def test_bad_envelopes(alice: httpx.AsyncClient) -> None:
    assert (await alice.post("/v1/media/resolve", json={"messages": []})).status_code == 400
    assert (await alice.post("/v1/media/resolve", json={"payload": {}, "extra": 1})).status_code == 400
    assert (await alice.post("/v1/media/resolve", json=[1])).status_code == 400
    broken = await alice.post("/v1/media/resolve", content=b"{", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


class CountingMedia:
    """Stands in for the database: records each lookup."""

    def __init__(self, known: dict[int, str]) -> None:
        self.known = known
        self.lookups: list[set[int]] = []

    async def ready_keys(self, user_id: str, media_ids: set[int]) -> dict[int, str]:
        self.lookups.append(set(media_ids))
        return {i: k for i, k in self.known.items() if i in media_ids}


class SigningStore:
    ttl = 300

    def presign_get(self, key: str, expires_in: int | None = None) -> str:
        return f"https://bucket.example/{key}?X-Amz-Signature=abc&X-Amz-Expires={expires_in}"


async def test_many_ids_are_looked_up_once() -> None:
    media = CountingMedia({i: f"media/{i}.png" for i in range(1, 101)})
    resolver = Resolver(cast(MediaService, media), cast(ObjectStore, SigningStore()))
    body = chat_payload(*(f"jan_{i}" for i in range(1, 101)))
    import orjson

    resolved = orjson.loads(await resolver.resolve("u", orjson.dumps({"payload": body})))
    assert len(media.lookups) == 1 and media.lookups[0] == set(range(1, 101))
    assert resolved["payload"]["messages"][1]["content"][100]["image_url"]["url"].endswith(
        "media/100.png?X-Amz-Signature=abc&X-Amz-Expires=300"
    )
    with pytest.raises(APIError) as missing:
        await resolver.resolve("u", orjson.dumps({"payload": chat_payload("jan_500", "jan_7", "jan_600")}))
    assert missing.value.status_code == 404
    assert "jan_500" in missing.value.message and "jan_600" in missing.value.message
    await asyncio.sleep(0)


async def test_anything_that_looks_like_a_placeholder_is_resolved_or_refused(
    alice: httpx.AsyncClient,
) -> None:
    for ident in ("jan_01hqr8v9k2x3f4g5h6j7k8m9n0", "jan_123abc", "jan_99999999999999999999999"):
        response = await alice.post("/v1/media/resolve", json={"payload": chat_payload(ident)})
        assert response.status_code == 404 and ident in response.json()["error"]["message"]


async def test_placeholders_with_an_escaped_slash(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png = unique_png()
    media_id = await uploaded(alice, png)
    body = b'{"payload": {"url": "data:image\\/png;' + media_id.encode() + b'"}}'
    response = await alice.post(
        "/v1/media/resolve", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert (await web.get(response.json()["payload"]["url"])).content == png
