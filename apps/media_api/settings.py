"""Settings of media-api.

Field names carry the `media_` prefix so the environment names are the deployment's
(`MEDIA_S3_BUCKET`, `MEDIA_MAX_BYTES`, …). Static S3 keys are optional: without them boto3's default
credential chain runs, which is how EKS Pod Identity / IRSA credentials reach the pod; local mode and
S3-compatible stores without an identity service (moto, MinIO) set them.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from apps.common.settings import ServiceSettings

DEFAULT_MAX_BYTES = 20 * 1024 * 1024


class MediaApiSettings(ServiceSettings):
    service_name: str = "media-api"
    db_schema: str = "media_api"

    media_s3_endpoint: str | None = None  # None: AWS's regional endpoint
    # Host that clients reach for presigned URLs when it differs from the service's (MinIO behind
    # localhost, a CDN in front of the bucket).
    media_s3_public_endpoint: str | None = None
    media_s3_region: str = "us-west-2"
    media_s3_bucket: str = "jan-media"
    media_s3_use_path_style: bool = False
    media_s3_access_key: SecretStr | None = None
    media_s3_secret_key: SecretStr | None = None
    media_s3_create_bucket: bool = False  # local mode: create the bucket at start-up
    media_s3_max_workers: int = Field(8, ge=1, le=64)
    media_s3_presign_ttl: int = Field(300, ge=1, le=7 * 24 * 3600)

    media_max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1)
    # Multipart form uploads are streamed to S3 in parts of this size (S3's minimum is 5 MiB); one
    # part per concurrent upload is all the memory an upload holds, and nothing goes to disk.
    media_upload_part_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=64 * 1024 * 1024)
    # `GET /v1/media/{id}/content` streams the bytes through the service instead of redirecting.
    media_proxy_download: bool = False
    media_remote_fetch_timeout: float = Field(15.0, gt=0)
    media_remote_fetch_max_redirects: int = Field(3, ge=0, le=10)
    # Host names and CIDR networks remote uploads may reach although they are not public.
    media_remote_fetch_allow: tuple[str, ...] = ()
    # An unconfirmed prepare-upload reservation lives this long after its upload URL expired.
    media_reservation_grace_seconds: int = Field(600, ge=0)
    media_cleanup_interval_seconds: float = Field(60.0, gt=0)
    # Resolve remembers each owner's ready ids this long (0 turns it off); see services/ready_cache.py.
    media_resolve_cache_seconds: float = Field(10.0, ge=0, le=300)
    # Resolve hands out the same presigned URL of an object this long (0 signs every time); each is
    # signed for this much longer than the TTL, so it stays valid the TTL (services/url_cache.py).
    media_resolve_url_reuse_seconds: float = Field(60.0, ge=0, le=240)
