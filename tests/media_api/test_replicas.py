"""Replicas of media-api never share a snowflake worker id, and a clash never costs another row its object.

Two real `jan-server serve media-api` processes run against the session's Postgres and moto, as two
pods of one Deployment would: neither is told a worker id. Then a clash is forced in-process (two
generators with the same worker id and a frozen clock) to check that the loser of a duplicate id
never overwrites or deletes the object the winner's row points to.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from apps.common.db import create_engine
from apps.common.ids import MAX_WORKER_ID, SEQUENCE_BITS, SnowflakeGenerator, parse_jan_id
from apps.gateway.embedded import free_port, stop_process, wait_ready
from apps.media_api.services.ingest import Payload
from apps.media_api.services.media import MediaService
from apps.media_api.services.sniff import inspect_bytes
from apps.media_api.services.storage import ObjectStore
from tests.harness.issuer import TestIssuer
from tests.harness.media import s3_client, settings_for, unique_png, uploaded

BUCKET = "media-replicas"


def _env(database_url: str, s3_endpoint: str, issuer: TestIssuer) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MEDIA_", "AUTH__"))}
    env.pop("WORKER_ID", None)
    env.update(
        {
            "DATABASE_URL": database_url,
            "MEDIA_S3_ENDPOINT": s3_endpoint,
            "MEDIA_S3_BUCKET": BUCKET,
            "MEDIA_S3_USE_PATH_STYLE": "true",
            "MEDIA_S3_ACCESS_KEY": "test",
            "MEDIA_S3_SECRET_KEY": "test",
            "MEDIA_S3_CREATE_BUCKET": "true",
            "AUTH__ISSUER": issuer.issuer,
            "AUTH__AUDIENCE": issuer.audience,
            "AUTH__JWKS_URL": issuer.jwks_url,
            "LOG_LEVEL": "WARNING",
            # Many concurrent uploads as one user, on purpose (see conftest.settings_for).
            "ADMISSION__MAX_CONCURRENT": "64",
            "ADMISSION__MAX_CONCURRENT_PER_USER": "64",
        }
    )
    return env


@contextmanager
def replica(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "apps.cli",
        "serve",
        "media-api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", process, 60)
        yield url
    finally:
        stop_process(process)


def worker_of(media_id: str) -> int:
    value = parse_jan_id(media_id)
    assert value is not None
    return (value >> SEQUENCE_BITS) & MAX_WORKER_ID


async def upload_batch(url: str, token: str, count: int) -> list[str]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        return list(await asyncio.gather(*(uploaded(client, unique_png()) for _ in range(count))))


def test_two_replicas_minting_concurrently_never_share_an_id(
    database_url: str, s3_endpoint: str, issuer: TestIssuer
) -> None:
    env = _env(database_url, s3_endpoint, issuer)
    with ExitStack() as stack:
        urls = [stack.enter_context(replica(env)) for _ in range(2)]
        token = issuer.mint("replica-user")

        async def both() -> list[list[str]]:
            return list(await asyncio.gather(*(upload_batch(url, token, 24) for url in urls)))

        first, second = asyncio.run(both())

    everything = first + second
    assert len(set(everything)) == len(everything)
    workers = [{worker_of(i) for i in batch} for batch in (first, second)]
    assert all(len(w) == 1 for w in workers), workers  # one lease per process for its lifetime
    assert workers[0] != workers[1]


def frozen_generator(worker_id: int) -> SnowflakeGenerator:
    return SnowflakeGenerator(worker_id, clock_ms=lambda: 1_767_225_600_000)


def payload(data: bytes) -> Payload:
    return Payload(data, inspect_bytes(data, 1 << 20), "image/png")


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    client = s3_client(s3_endpoint)
    try:
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return client


async def test_a_forced_id_clash_never_deletes_the_other_rows_object(
    database_url: str, s3_endpoint: str, issuer: TestIssuer, s3: Any
) -> None:
    settings = settings_for(database_url, s3_endpoint, issuer, media_s3_bucket=BUCKET)
    engine = create_engine(database_url, schema="media_api")
    store = ObjectStore(settings)
    worker = 1000  # outside what the lease hands out in this session's few processes

    def service() -> MediaService:
        return MediaService(
            engine, store, frozen_generator(worker), max_bytes=1 << 20, reservation_grace=timedelta(0)
        )

    first_bytes, second_bytes = unique_png(), unique_png()
    try:
        first = await service().store_payload("clash-a", payload(first_bytes), "a.png")
        # A second replica with the same worker id and the same millisecond mints the same id first.
        second = await service().store_payload("clash-b", payload(second_bytes), "b.png")
    finally:
        store.close()
        await engine.dispose()

    assert first.media.id != second.media.id
    kept = s3.get_object(Bucket=BUCKET, Key=first.media.storage_key)["Body"].read()
    assert kept == first_bytes
    stored = s3.get_object(Bucket=BUCKET, Key=second.media.storage_key)["Body"].read()
    assert stored == second_bytes
