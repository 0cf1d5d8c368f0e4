"""Multipart uploads stream to S3 and never touch the disk (the pod's /tmp is a small emptyDir).

The app runs with the temporary directory pointed at a path that does not exist, so any spooling to
disk fails the upload (S3, a moto server, runs in a process of its own for this reason). A file
bigger than one S3 part goes up as a multipart upload; a failure partway (the size limit, content
that stops being text) leaves neither a row nor an object nor an unfinished multipart upload.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from apps.gateway.embedded import free_port, stop_process, wait_ready
from apps.media_api.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.media import PNG, media_rows, s3_client, settings_for, upload_form
from tests.harness.server import serve

MiB = 1024 * 1024
PART = 5 * MiB
LIMIT = 12 * MiB
BUCKET = "media-streaming"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto in a process of its own: it spools bodies to temporary files itself, the app must not."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/moto-api/data.json", process, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def big_url(database_url: str, s3_endpoint: str, issuer: TestIssuer) -> Iterator[str]:
    settings = settings_for(
        database_url,
        s3_endpoint,
        issuer,
        media_max_bytes=LIMIT,
        media_upload_part_bytes=PART,
        media_proxy_download=True,
        media_s3_bucket=BUCKET,
    )
    with serve(create_app(settings)) as server:
        yield server.url


@pytest.fixture
def no_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", f"/nonexistent-{uuid.uuid4().hex}")


@pytest.fixture
def user() -> str:
    return f"streamer-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(big_url: str, issuer: TestIssuer, user: str) -> AsyncIterator[httpx.AsyncClient]:
    token = issuer.mint(user)
    async with httpx.AsyncClient(
        base_url=big_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        yield c


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return s3_client(s3_endpoint)


def png_of(size: int) -> bytes:
    body = PNG + uuid.uuid4().bytes
    return body + bytes(range(256)) * ((size - len(body)) // 256 + 1)


@pytest.mark.usefixtures("no_disk")
@pytest.mark.parametrize("size", [3 * MiB, 11 * MiB + 123], ids=["one-part", "multipart"])
async def test_large_form_uploads_stream_without_touching_disk(client: httpx.AsyncClient, size: int) -> None:
    data = png_of(size)[:size]
    response = await upload_form(client, data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bytes"] == size and body["mime_type"] == "image/png" and body["filename"] == "named.png"
    content = await client.get(f"/v1/media/{body['id']}/content")
    assert content.status_code == 200 and content.content == data

    again = await upload_form(client, data)  # the same bytes again: deduplicated, nothing new stored
    assert again.json()["id"] == body["id"] and again.json()["deduplicated"] is True


@pytest.mark.usefixtures("no_disk")
async def test_a_failure_partway_leaves_nothing_behind(
    client: httpx.AsyncClient, s3: Any, database_url: str, user: str
) -> None:
    before = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}

    too_big = await upload_form(client, png_of(LIMIT + MiB))
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"]["code"] == "too_large"

    text_then_binary = b"plain words\n" * (PART // 12 + 1) + b"\x00\x01binary" * 1000
    turned = await upload_form(client, text_then_binary, "text/plain")
    assert turned.status_code == 415, turned.text

    after = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert after == before
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert await media_rows(database_url, user) == 0


async def test_a_form_without_a_file_part_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/media", data={"filename": "x"}, files={"other": ("a", b"b")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_file"
