"""media-api for tests: sample files, its test settings, and the requests the suites repeat."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import boto3
import httpx
from botocore.config import Config
from pydantic import SecretStr
from sqlalchemy import text

from apps.common.db import create_engine
from apps.common.settings import AdmissionSettings
from apps.media_api.settings import MediaApiSettings
from tests.harness.issuer import TestIssuer

MAX_BYTES = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 3
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def unique_png() -> bytes:
    return PNG + uuid.uuid4().bytes


def settings_for(
    database_url: str, s3_endpoint: str, issuer: TestIssuer, **overrides: Any
) -> MediaApiSettings:
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "auth": issuer.auth_settings(),
        "media_s3_endpoint": s3_endpoint,
        "media_s3_bucket": "media-tests",
        "media_s3_use_path_style": True,
        "media_s3_access_key": SecretStr("test"),
        "media_s3_secret_key": SecretStr("test"),
        "media_s3_create_bucket": True,
        "media_max_bytes": MAX_BYTES,
        "media_remote_fetch_timeout": 1.0,
        "media_remote_fetch_allow": ("public.test",),
        # These tests upload many files at once as one user on purpose (id races, S3 faults);
        # admission's per-user share is tested in tests/common/test_admission.py.
        "admission": AdmissionSettings(max_concurrent=64, max_concurrent_per_user=64),
    }
    values.update(overrides)
    return MediaApiSettings(**values)


async def upload_data_url(client: httpx.AsyncClient, data: bytes, mime: str = "image/png") -> httpx.Response:
    """`POST /v1/media` with the bytes as a data URL (the server-proxied JSON upload)."""
    return await client.post(
        "/v1/media", json={"source": {"type": "data_url", "data_url": data_url(data, mime)}}
    )


async def uploaded(client: httpx.AsyncClient, data: bytes, mime: str = "image/png") -> str:
    """The id of the bytes uploaded as a data URL; the upload must succeed."""
    response = await upload_data_url(client, data, mime)
    assert response.status_code == 200, response.text
    media_id: str = response.json()["id"]
    return media_id


async def upload_form(client: httpx.AsyncClient, data: bytes, mime: str = "image/png") -> httpx.Response:
    """`POST /v1/media` as a multipart form with a file part (the streamed upload)."""
    return await client.post(
        "/v1/media", files={"file": ("big.bin", data, mime)}, data={"filename": "named.png"}
    )


async def media_rows(database_url: str, user: str) -> int:
    """How many media rows `user` owns, read straight from media-api's schema."""
    engine = create_engine(database_url, schema="media_api")
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM media_objects WHERE user_id = :u"), {"u": user}
            )
    finally:
        await engine.dispose()
    return int(count or 0)


def s3_client(endpoint: str) -> Any:
    """A boto3 client of the test S3 endpoint (moto), path-style as media-api is configured."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-west-2",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}),
    )
