"""The media-api application factory.

The lifespan builds the database engine, the object store (boto3 on its own thread pool), the SSRF-safe
fetcher for remote uploads, the snowflake worker id (leased in Postgres and kept alive by a heartbeat,
so replicas never share one) and the services; it registers readiness checks for Postgres and S3,
runs the periodic purge of expired upload reservations and, when configured to (local mode), creates
the bucket with a CORS rule for the configured origins so that browsers can PUT to presigned URLs.
In a cluster the platform program owns the bucket and its CORS rule.

The raw request body limit sits above the media limit because a data URL carries base64 (4/3 of the
bytes) inside JSON; the media limit itself is enforced on the decoded bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from apps.common.heap import freeze_startup_heap
from apps.common.ids import WorkerLease
from apps.common.safe_fetch import FetchPolicy, SafeFetcher, system_resolver
from apps.common.safe_fetch import Resolver as DnsResolver
from apps.common.service import open_database, service_app
from apps.media_api.db import WORKER_LEASES
from apps.media_api.routes import media, resolve
from apps.media_api.services.media import MediaService
from apps.media_api.services.resolve import Resolver
from apps.media_api.services.storage import ObjectStore
from apps.media_api.settings import MediaApiSettings

log = logging.getLogger(__name__)

_BODY_OVERHEAD = 64 * 1024


def max_body_bytes(settings: MediaApiSettings) -> int:
    return settings.media_max_bytes * 4 // 3 + _BODY_OVERHEAD


async def purge_periodically(service: MediaService, interval: float) -> None:
    while True:
        try:
            purged = await service.purge_expired_reservations()
            if purged:
                log.info("purged expired upload reservations", extra={"count": purged})
        except Exception:  # a database or S3 hiccup must not end the loop
            log.exception("purging expired upload reservations failed")
        await asyncio.sleep(interval)


def create_app(settings: MediaApiSettings | None = None, *, dns: DnsResolver = system_resolver) -> FastAPI:
    """`dns` resolves remote-upload hosts (tests inject one to point a name at loopback)."""
    settings = settings or MediaApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_database(app, settings) as engine:
            store = ObjectStore(settings)
            lease = WorkerLease(engine, WORKER_LEASES, ttl_seconds=settings.worker_lease_seconds)
            try:
                if settings.media_s3_create_bucket:
                    await store.ensure_bucket(settings.cors_origins)
                service = MediaService(
                    engine,
                    store,
                    lease,
                    max_bytes=settings.media_max_bytes,
                    reservation_grace=timedelta(seconds=settings.media_reservation_grace_seconds),
                    ready_cache_seconds=settings.media_resolve_cache_seconds,
                )
                app.state.media = service
                app.state.resolver = Resolver(service, store, settings.media_resolve_url_reuse_seconds)
                app.state.fetcher = SafeFetcher(
                    FetchPolicy(
                        max_bytes=settings.media_max_bytes,
                        timeout_seconds=settings.media_remote_fetch_timeout,
                        max_redirects=settings.media_remote_fetch_max_redirects,
                        allow=settings.media_remote_fetch_allow,
                    ),
                    resolver=dns,
                )
                app.state.readiness.add("s3", store.check)
                purge = asyncio.create_task(
                    purge_periodically(service, settings.media_cleanup_interval_seconds), name="media-purge"
                )
                try:
                    async with lease.held():
                        freeze_startup_heap()  # full collections stay off the request path
                        yield
                finally:
                    purge.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await purge
            finally:
                store.close()

    app = service_app(settings, title="media-api", lifespan=lifespan, max_body_bytes=max_body_bytes(settings))
    app.include_router(resolve.router)
    app.include_router(media.router)
    return app
