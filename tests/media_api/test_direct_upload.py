"""prepare-upload → browser-style PUT to the presigned URL → complete; expiry of unconfirmed reservations.

moto does not check SigV4 signatures or expiry, so what the URL enforces is shown by what is signed
into it; what was really stored is checked by `complete`, which reads the object back.
"""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.harness.media import JPEG, PNG, unique_png


async def prepare(
    client: httpx.AsyncClient, data: bytes, mime: str = "image/png", **extra: object
) -> dict[str, object]:
    response = await client.post(
        "/v1/media/prepare-upload", json={"mime_type": mime, "bytes": len(data), **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def put(web: httpx.AsyncClient, upload: dict[str, object], data: bytes) -> httpx.Response:
    headers = upload["headers"]
    assert isinstance(headers, dict)
    return await web.put(str(upload["upload_url"]), content=data, headers=headers)


async def test_direct_upload_round_trip(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png = unique_png()
    upload = await prepare(alice, png, filename="direct.png")
    assert upload["method"] == "PUT" and upload["headers"] == {"Content-Type": "image/png"}
    assert (await alice.get(f"/v1/media/{upload['id']}")).json()["status"] == "pending"
    assert (await put(web, upload, png)).status_code == 200

    completed = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert body["id"] == upload["id"] and body["status"] == "ready" and body["filename"] == "direct.png"
    assert body["bytes"] == len(png) and body["sha256"] == hashlib.sha256(png).hexdigest()
    assert (await web.get(body["url"])).content == png
    again = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert again.status_code == 200 and again.json()["id"] == upload["id"]


async def test_the_put_url_signs_type_length_checksum_and_expiry(alice: httpx.AsyncClient) -> None:
    png = unique_png()
    digest = hashlib.sha256(png).hexdigest()
    upload = await prepare(alice, png, sha256=digest)
    query = parse_qs(urlsplit(str(upload["upload_url"])).query)
    signed = query["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-type", "content-length", "x-amz-checksum-sha256", "host"} <= set(signed)
    assert query["X-Amz-Expires"] == ["300"]
    assert "media/" in urlsplit(str(upload["upload_url"])).path
    headers = upload["headers"]
    assert isinstance(headers, dict) and headers["Content-Type"] == "image/png"
    assert "x-amz-checksum-sha256" in headers


async def test_prepare_refuses_disallowed_types_and_sizes(alice: httpx.AsyncClient) -> None:
    html = await alice.post("/v1/media/prepare-upload", json={"mime_type": "text/html", "bytes": 10})
    assert html.status_code == 415 and html.json()["error"]["param"] == "mime_type"
    huge = await alice.post("/v1/media/prepare-upload", json={"mime_type": "image/png", "bytes": 10**9})
    assert huge.status_code == 413
    extra = await alice.post("/v1/media/prepare-upload", json={"mime_type": "image/png", "bytes": 1, "x": 1})
    assert extra.status_code == 400


async def test_complete_before_the_upload(alice: httpx.AsyncClient) -> None:
    upload = await prepare(alice, PNG)
    response = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert response.status_code == 409 and response.json()["error"]["code"] == "upload_missing"


async def test_complete_checks_the_real_type(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    upload = await prepare(alice, JPEG, mime="image/png")
    assert (await put(web, upload, JPEG)).status_code == 200  # moto does not enforce the signed type
    response = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert response.status_code == 400 and response.json()["error"]["code"] == "content_type_mismatch"
    # The bad object was deleted; the reservation waits for a correct upload.
    missing = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert missing.status_code == 409


async def test_complete_checks_the_real_size_and_hash(
    alice: httpx.AsyncClient, web: httpx.AsyncClient
) -> None:
    png = unique_png()
    upload = await prepare(alice, png)
    await web.put(str(upload["upload_url"]), content=png[:-5], headers={"Content-Type": "image/png"})
    response = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert response.status_code == 400 and response.json()["error"]["code"] == "size_mismatch"

    other = unique_png()
    upload = await prepare(alice, png, sha256=hashlib.sha256(other).hexdigest())
    await web.put(str(upload["upload_url"]), content=png, headers={"Content-Type": "image/png"})
    response = await alice.post(f"/v1/media/{upload['id']}/complete")
    assert response.status_code == 400 and response.json()["error"]["code"] == "hash_mismatch"


async def test_complete_deduplicates(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png = unique_png()
    first = await alice.post("/v1/media", files={"file": ("a.png", png, "image/png")})
    upload = await prepare(alice, png)
    await put(web, upload, png)
    completed = (await alice.post(f"/v1/media/{upload['id']}/complete")).json()
    assert completed["id"] == first.json()["id"] and completed["deduplicated"] is True
    assert (await alice.get(f"/v1/media/{upload['id']}")).status_code == 404


async def test_unconfirmed_reservations_expire(alt: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png = unique_png()
    upload = await prepare(alt, png)
    assert "X-Amz-Expires=1&" in str(upload["upload_url"])  # the configured TTL
    assert (await put(web, upload, png)).status_code == 200
    for _ in range(100):
        if (await alt.get(f"/v1/media/{upload['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.1)
    assert (await alt.get(f"/v1/media/{upload['id']}")).status_code == 404
    assert (await alt.post(f"/v1/media/{upload['id']}/complete")).status_code == 404
    # The uploaded bytes went with it (the store answers 404 for a missing key).
    key_url = str(upload["upload_url"]).split("?")[0]
    assert (await web.get(key_url)).status_code == 404


async def test_browsers_at_allowed_origins_may_put(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    upload = await prepare(alice, unique_png())
    preflight = {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"}
    allowed = await web.options(
        str(upload["upload_url"]), headers={"Origin": "http://localhost:3000", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    refused = await web.options(
        str(upload["upload_url"]), headers={"Origin": "https://evil.example", **preflight}
    )
    assert refused.status_code == 403
