"""The object store: boto3 S3 behind a small thread pool.

boto3 blocks, so every call that talks to S3 runs on a dedicated executor (its size bounds the
concurrent S3 calls and matches the connection pool). Presigning is local CPU work (an HMAC) and runs
inline. Presigned URLs come from a second client pointed at the public endpoint when one is set, so the
host a browser sees is signed into the URL instead of being rewritten after signing.

Credentials: static keys only when configured (moto, MinIO); otherwise boto3's default chain, which
picks up EKS Pod Identity / IRSA on AWS.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from apps.common.errors import APIError
from apps.media_api.services.sniff import ContentInspector, Inspected
from apps.media_api.settings import MediaApiSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, CORSRuleTypeDef, ObjectIdentifierTypeDef

T = TypeVar("T")

_CHUNK = 256 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    headers: dict[str, str]


def _client(settings: MediaApiSettings, endpoint: str | None) -> S3Client:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.media_s3_use_path_style else "virtual"},
        max_pool_connections=settings.media_s3_max_workers,
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
    )
    keys: dict[str, Any] = {}
    if settings.media_s3_access_key and settings.media_s3_secret_key:
        keys = {
            "aws_access_key_id": settings.media_s3_access_key.get_secret_value(),
            "aws_secret_access_key": settings.media_s3_secret_key.get_secret_value(),
        }
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=settings.media_s3_region, config=config, **keys
    )


def unavailable() -> APIError:
    return APIError(
        503,
        "The object store is unavailable right now; retry shortly.",
        code="storage_unavailable",
        headers={"Retry-After": "5"},
    )


def is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class ObjectStore:
    def __init__(self, settings: MediaApiSettings) -> None:
        self.bucket = settings.media_s3_bucket
        self.ttl = settings.media_s3_presign_ttl
        self._s3 = _client(settings, settings.media_s3_endpoint)
        public = settings.media_s3_public_endpoint
        self._signer = _client(settings, public) if public else self._s3
        self._executor = ThreadPoolExecutor(settings.media_s3_max_workers, thread_name_prefix="s3")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._s3.close()
        if self._signer is not self._s3:
            self._signer.close()

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))
        except (BotoConnectionError, HTTPClientError) as exc:  # refused, reset, timed out, after retries
            raise unavailable() from exc
        except ClientError as exc:
            if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500:
                raise unavailable() from exc
            raise

    async def check(self) -> None:
        await self._run(self._s3.head_bucket, Bucket=self.bucket)

    async def ensure_bucket(self, cors_origins: tuple[str, ...]) -> None:
        """Create the bucket if missing and let browsers at `cors_origins` PUT and GET directly."""
        try:
            await self.check()
        except ClientError as exc:
            if not is_missing(exc):
                raise
            await self._create_bucket()
        rule: CORSRuleTypeDef = {
            "AllowedOrigins": list(cors_origins),
            "AllowedMethods": ["PUT", "GET", "HEAD"],
            "AllowedHeaders": ["content-type", "x-amz-checksum-sha256"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3600,
        }
        await self._run(self._s3.put_bucket_cors, Bucket=self.bucket, CORSConfiguration={"CORSRules": [rule]})

    async def _create_bucket(self) -> None:
        region = self._s3.meta.region_name
        try:
            if region == "us-east-1":  # the one region that refuses an explicit location constraint
                await self._run(self._s3.create_bucket, Bucket=self.bucket)
            else:
                await self._run(
                    self._s3.create_bucket,
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},
                )
        except ClientError as exc:  # another replica (or app instance) was first
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise

    def streaming_upload(self, key: str, mime_type: str, part_bytes: int) -> StreamingUpload:
        return StreamingUpload(self, key, mime_type, part_bytes)

    async def start_multipart(self, key: str, mime_type: str) -> str:
        created = await self._run(
            self._s3.create_multipart_upload, Bucket=self.bucket, Key=key, ContentType=mime_type
        )
        return created["UploadId"]

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        uploaded = await self._run(
            self._s3.upload_part,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return uploaded["ETag"]

    async def complete_multipart(self, key: str, upload_id: str, parts: list[CompletedPartTypeDef]) -> None:
        await self._run(
            self._s3.complete_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._run(self._s3.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def put(self, key: str, data: bytes, mime_type: str) -> None:
        await self._run(self._s3.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=mime_type)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        objects: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys]
        await self._run(
            self._s3.delete_objects, Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
        )

    async def inspect(self, key: str, limit: int) -> Inspected | None:
        """Type, size and hash of the stored object (read in full), or None when it does not exist."""
        return await self._run(self._inspect, key, limit)

    def _inspect(self, key: str, limit: int) -> Inspected | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        body = response["Body"]
        inspector = ContentInspector(limit)
        try:
            for chunk in body.iter_chunks(_CHUNK):
                inspector.feed(chunk)
        finally:
            body.close()
        return inspector.finish()

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        response = await self._run(self._s3.get_object, Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            while chunk := await self._run(body.read, _CHUNK):
                yield chunk
        finally:
            body.close()

    def presign_get(self, key: str, expires_in: int | None = None) -> str:
        return self._signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in or self.ttl
        )

    def presign_put(self, key: str, mime_type: str, size: int, sha256_hex: str | None) -> PresignedUpload:
        """A PUT URL whose signature covers the content type and length (and checksum, when given)."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": mime_type,
            "ContentLength": size,
        }
        headers = {"Content-Type": mime_type}
        if sha256_hex:
            checksum = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        url = self._signer.generate_presigned_url("put_object", Params=params, ExpiresIn=self.ttl)
        return PresignedUpload(url, headers)


class StreamingUpload:
    """Bytes written to one key as they arrive: one PUT if they fit a part, a multipart upload if not.

    At most one part (`part_bytes`, at least S3's 5 MiB minimum) is held in memory; nothing touches
    the disk. `abort()` removes whatever was started, so a failed upload leaves no object and no
    dangling multipart upload.
    """

    def __init__(self, store: ObjectStore, key: str, mime_type: str, part_bytes: int) -> None:
        self._store = store
        self.key = key
        self._mime_type = mime_type
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            await self._upload_part(part)

    async def _upload_part(self, part: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = await self._store.start_multipart(self.key, self._mime_type)
        number = len(self._parts) + 1
        etag = await self._store.upload_part(self.key, self._upload_id, number, part)
        self._parts.append({"ETag": etag, "PartNumber": number})

    async def finish(self) -> None:
        if self._upload_id is None:
            await self._store.put(self.key, bytes(self._buffer), self._mime_type)
            return
        if self._buffer:
            await self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        await self._store.complete_multipart(self.key, self._upload_id, self._parts)

    async def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            await self._store.abort_multipart(self.key, self._upload_id)
        await self._store.delete(self.key)
