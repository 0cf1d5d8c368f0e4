"""Fault injection: uploads while media-api's S3 (a moto server) is stopped and started again.

Every upload must end either acknowledged (200) and stored, or with an error the client saw (503
with `Retry-After`, in the OpenAI envelope). After S3 is back: 0 acknowledged-but-lost, and no row
without its object (nothing half-written).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from moto.server import ThreadedMotoServer

from apps.gateway.embedded import free_port
from apps.media_api.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.media import media_rows, settings_for, unique_png, upload_data_url
from tests.harness.server import serve

UPLOADS = 30


@dataclass
class S3Switch:
    """A moto server that can be stopped and started again on the same port (its data is in-process)."""

    port: int = field(default_factory=free_port)
    server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def s3_switch() -> Iterator[S3Switch]:
    switch = S3Switch()
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


@dataclass(frozen=True)
class Outcome:
    data: bytes
    status: int
    body: dict[str, object]
    retry_after: str | None


async def test_uploads_while_s3_is_down_are_stored_or_refused_never_lost(
    database_url: str, issuer: TestIssuer, s3_switch: S3Switch
) -> None:
    settings = settings_for(database_url, s3_switch.endpoint, issuer, media_s3_bucket="media-faults")
    user = f"faulty-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {issuer.mint(user)}"}
    with serve(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:
            outcomes = await _upload_through_an_outage(client, s3_switch)

            acknowledged = [o for o in outcomes if o.status == 200]
            refused = [o for o in outcomes if o.status != 200]
            assert refused, "the outage refused nothing: the fault was not injected"
            for outcome in refused:
                assert outcome.status == 503, outcome.body
                assert outcome.retry_after is not None
                error = outcome.body["error"]
                assert isinstance(error, dict) and error["type"] == "service_unavailable"
            for outcome in acknowledged:  # S3 is back: everything acknowledged is there, byte for byte
                media_id = outcome.body["id"]
                content = await client.get(f"/v1/media/{media_id}/content", follow_redirects=True)
                assert content.status_code == 200 and content.content == outcome.data
    assert await media_rows(database_url, user) == len(acknowledged)  # no row for what was refused


async def _upload_through_an_outage(client: httpx.AsyncClient, s3: S3Switch) -> list[Outcome]:
    """Uploads in waves: S3 up, then stopped, then started again; the order decides, not timings."""
    outcomes: list[Outcome] = []

    async def one() -> Outcome:
        data = unique_png()
        response = await upload_data_url(client, data)
        return Outcome(data, response.status_code, response.json(), response.headers.get("retry-after"))

    async def wave(count: int) -> None:
        outcomes.extend(await asyncio.gather(*(one() for _ in range(count))))

    wave_size = UPLOADS // 3
    uploads = asyncio.create_task(wave(wave_size))
    await asyncio.to_thread(s3.stop)  # concurrently with the first wave: some get in, some do not
    await uploads
    await wave(wave_size)  # S3 down throughout
    restart = asyncio.create_task(asyncio.to_thread(s3.start))
    await wave(wave_size)  # concurrently with the restart
    await restart
    return outcomes
