"""Server-proxied uploads end to end: data URL, multipart and remote URL; dedup, list, delete, ownership."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from apps.gateway.embedded import free_port
from apps.media_api.main import create_app
from apps.media_api.services.storage import ObjectStore
from apps.media_api.settings import MediaApiSettings
from tests.harness.issuer import TestIssuer
from tests.harness.media import JPEG, PDF, data_url, settings_for, unique_png
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT


async def test_data_url_upload_round_trip(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    png = unique_png()
    created = await alice.post("/v1/media", json={"source": {"type": "data_url", "data_url": data_url(png)}})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["id"].startswith("jan_") and body["id"][4:].isdigit()
    assert body["mime_type"] == "image/png" and body["bytes"] == len(png)
    assert body["sha256"] == hashlib.sha256(png).hexdigest() and body["deduplicated"] is False
    assert "X-Amz-Expires=300" in body["url"] and body["expires_at"] > body["created_at"]
    fetched = await web.get(body["url"])
    assert fetched.status_code == 200 and fetched.content == png
    assert fetched.headers["content-type"] == "image/png"


async def test_reference_spelling_of_the_source_type(alice: httpx.AsyncClient) -> None:
    created = await alice.post(
        "/v1/media", json={"source": {"type": "datauri", "data_url": data_url(JPEG, "image/jpeg")}}
    )
    assert created.status_code == 200, created.text
    assert created.json()["mime_type"] == "image/jpeg"


async def test_multipart_upload(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    files = {"file": ("report.pdf", PDF, "application/pdf")}
    created = await alice.post("/v1/media", files=files)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["mime_type"] == "application/pdf" and body["filename"] == "report.pdf"
    assert (await web.get(body["url"])).content == PDF


async def test_multipart_plain_text_without_a_declared_type(alice: httpx.AsyncClient) -> None:
    text = "Notes for file search.\nSecond line, ünïcödé.\n".encode()
    created = await alice.post(
        "/v1/media", files={"file": ("notes", text, "application/octet-stream")}, data={"filename": "n.txt"}
    )
    assert created.status_code == 200, created.text
    assert created.json()["mime_type"] == "text/plain" and created.json()["filename"] == "n.txt"


async def test_remote_url_upload(alice: httpx.AsyncClient, web: httpx.AsyncClient, site: int) -> None:
    source = {"type": "remote_url", "url": f"http://public.test:{site}/image.png"}
    created = await alice.post("/v1/media", json={"source": source, "filename": "remote.png"})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["mime_type"] == "image/png"
    fetched = await web.get(body["url"])
    assert hashlib.sha256(fetched.content).hexdigest() == body["sha256"]


async def test_same_bytes_are_deduplicated_per_user(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    png = unique_png()
    request = {"source": {"type": "data_url", "data_url": data_url(png)}}
    first = (await alice.post("/v1/media", json=request)).json()
    again = (await alice.post("/v1/media", files={"file": ("x.png", png, "image/png")})).json()
    assert again["id"] == first["id"] and again["deduplicated"] is True
    other = (await bob.post("/v1/media", json=request)).json()
    assert other["id"] != first["id"] and other["deduplicated"] is False


async def test_get_list_delete(alice: httpx.AsyncClient, web: httpx.AsyncClient) -> None:
    ids = []
    for _ in range(3):
        created = await alice.post(
            "/v1/media", json={"source": {"type": "data_url", "data_url": data_url(unique_png())}}
        )
        ids.append(created.json()["id"])
    meta = (await alice.get(f"/v1/media/{ids[0]}")).json()
    assert meta["id"] == ids[0] and meta["status"] == "ready" and meta["object"] == "media"

    page = (await alice.get("/v1/media", params={"limit": 2})).json()
    assert [m["id"] for m in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    rest = (await alice.get("/v1/media", params={"limit": 2, "after": page["last_id"]})).json()
    assert [m["id"] for m in rest["data"]] == [ids[0]] and rest["has_more"] is False

    content = await alice.get(f"/v1/media/{ids[0]}/content")
    assert content.status_code == 307
    stored_url = content.headers["location"]
    assert (await web.get(stored_url)).status_code == 200

    deleted = await alice.delete(f"/v1/media/{ids[0]}")
    assert deleted.status_code == 200 and deleted.json() == {
        "id": ids[0],
        "object": "media.deleted",
        "deleted": True,
    }
    assert (await alice.get(f"/v1/media/{ids[0]}")).status_code == 404
    assert (await web.get(stored_url)).status_code == 404  # the object is gone from S3 too
    assert (await alice.delete(f"/v1/media/{ids[0]}")).status_code == 404


async def test_another_users_media_is_not_found(alice: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    created = await alice.post(
        "/v1/media", json={"source": {"type": "data_url", "data_url": data_url(unique_png())}}
    )
    media_id = created.json()["id"]
    for response in (
        await bob.get(f"/v1/media/{media_id}"),
        await bob.get(f"/v1/media/{media_id}/content"),
        await bob.post("/v1/media/resolve", json={"payload": {"url": f"data:image/png;{media_id}"}}),
        await bob.delete(f"/v1/media/{media_id}"),
        await bob.post(f"/v1/media/{media_id}/complete"),
    ):
        assert response.status_code == 404, response.text
        assert media_id in response.json()["error"]["message"]
    assert media_id not in [m["id"] for m in (await bob.get("/v1/media")).json()["data"]]
    assert (await alice.get(f"/v1/media/{media_id}")).status_code == 200


async def test_unknown_and_malformed_ids(alice: httpx.AsyncClient) -> None:
    for ident in ("jan_1", "jan_abc", "not-an-id", "jan_99999999999999999999999"):
        response = await alice.get(f"/v1/media/{ident}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "media_not_found"


async def test_credentials_are_required(media_url: str) -> None:
    async with httpx.AsyncClient(base_url=media_url, timeout=CLIENT_TIMEOUT) as anonymous:
        response = await anonymous.get("/v1/media")
    assert response.status_code == 401 and "error" in response.json()


async def test_proxied_download_streams_the_bytes(alt: httpx.AsyncClient) -> None:
    created = await alt.post("/v1/media", files={"file": ("a.jpg", JPEG, "image/jpeg")})
    content = await alt.get(f"/v1/media/{created.json()['id']}/content")
    assert content.status_code == 200 and content.content == JPEG
    assert content.headers["content-type"] == "image/jpeg"


async def test_readiness_reports_s3_and_postgres(media_url: str) -> None:
    async with httpx.AsyncClient(base_url=media_url, timeout=CLIENT_TIMEOUT) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": {"status": "ok"}, "s3": {"status": "ok"}}


async def test_openapi_documents_both_upload_bodies(media_url: str) -> None:
    async with httpx.AsyncClient(base_url=media_url, timeout=CLIENT_TIMEOUT) as client:
        spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/media"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "$defs" not in str(body) and "data_url" in str(body["application/json"])
    assert "/v1/media/resolve" in spec["paths"] and "/v1/media/{media_id}/complete" in spec["paths"]


async def test_storage_keys_never_carry_client_input(alice: httpx.AsyncClient) -> None:
    files = {"file": ("../../etc/passwd%00.png", unique_png(), "image/png")}
    created = await alice.post("/v1/media", files=files, data={"filename": "../../x/<script>.png"})
    body = created.json()
    path = urlsplit(body["url"]).path
    assert path == f"/media-tests/media/{body['id'][4:]}.png"
    assert body["filename"] == "../../x/<script>.png"  # kept as metadata only


def test_presigned_urls_use_the_public_endpoint() -> None:
    settings = MediaApiSettings(
        media_s3_endpoint="http://s3.internal:9000",
        media_s3_public_endpoint="https://media.example.com",
        media_s3_bucket="jan-media",
        media_s3_use_path_style=True,
        media_s3_access_key=SecretStr("k"),
        media_s3_secret_key=SecretStr("s"),
        media_s3_presign_ttl=120,
    )
    store = ObjectStore(settings)
    try:
        url = store.presign_get("media/1.png")
        upload = store.presign_put("media/2.png", "image/png", 10, None)
    finally:
        store.close()
    assert url.startswith("https://media.example.com/jan-media/media/1.png?") and "X-Amz-Expires=120" in url
    assert upload.url.startswith("https://media.example.com/jan-media/media/2.png?")


def test_readiness_fails_when_s3_is_unreachable(database_url: str, issuer: TestIssuer) -> None:
    settings = settings_for(
        database_url, f"http://127.0.0.1:{free_port()}", issuer, media_s3_create_bucket=False
    )
    with serve(create_app(settings)) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"]["status"] == "ok" and checks["s3"]["status"] == "error"
