"""Turning what a client sent into bytes: a data URL or a remote URL (forms: services/streaming).

Each reader enforces the size limit before or while it produces bytes: a data URL's decoded size is
computed from its base64 length before decoding; remote bodies are counted chunk by chunk. Remote
fetches go through the kit's `SafeFetcher` (the SSRF guard shared with mcp-tools), and its errors,
which speak of "fetching", are re-worded as errors of the `source.url` field; an unreachable or
failing remote server is a 400, because the URL is the client's input.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from apps.common.errors import APIError
from apps.common.safe_fetch import SafeFetcher
from apps.media_api.services.sniff import UNKNOWN, ContentInspector, Inspected, TooLarge, normalize_mime


@dataclass(frozen=True)
class Payload:
    data: bytes
    inspected: Inspected
    declared_type: str | None  # what the client said the type is; checked, never trusted


def declared_type(value: str | None) -> str | None:
    """The type a client named, or None when it named none (empty or the generic octet-stream)."""
    declared = normalize_mime(value or "")
    return None if declared in ("", UNKNOWN) else declared


def too_large(limit: int) -> APIError:
    return APIError(413, f"The media is larger than the limit of {limit} bytes.", code="too_large")


def _inspect(data: bytes, limit: int) -> Inspected:
    inspector = ContentInspector(limit)
    try:
        inspector.feed(data)
    except TooLarge as exc:
        raise too_large(limit) from exc
    return inspector.finish()


def read_data_url(value: str, limit: int) -> Payload:
    param = "source.data_url"
    if not value.startswith("data:") or "," not in value:
        raise APIError(
            400, "A data URL looks like 'data:<type>;base64,<data>'.", param=param, code="invalid_data_url"
        )
    header, _, encoded = value[5:].partition(",")
    if ";base64" not in header.lower():
        raise APIError(400, "Only base64 data URLs are accepted.", param=param, code="invalid_data_url")
    encoded = "".join(encoded.split())
    decoded_size = len(encoded) * 3 // 4 - (len(encoded) - len(encoded.rstrip("=")))
    if decoded_size > limit:
        raise too_large(limit)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, "The data URL is not valid base64.", param=param, code="invalid_base64") from exc
    return Payload(data, _inspect(data, limit), declared_type(header.split(";", 1)[0]))


async def read_remote(fetcher: SafeFetcher, url: str, limit: int) -> Payload:
    param = "source.url"
    try:
        fetched = await fetcher.get(url)
    except APIError as exc:
        if exc.status_code == 413:
            raise too_large(limit) from exc
        if exc.code == "fetch_timeout":
            message = f"The remote server did not answer within {fetcher.policy.timeout_seconds:g}s."
            raise APIError(400, message, param=param, code="remote_timeout") from exc
        raise APIError(400, exc.message, param=param, code=exc.code or "remote_fetch_failed") from exc
    if fetched.status_code >= 400:
        message = f"The remote server answered with HTTP {fetched.status_code}."
        raise APIError(400, message, param=param, code="remote_fetch_failed")
    # Servers label files loosely (octet-stream for everything); the sniffed type alone decides.
    return Payload(fetched.content, _inspect(fetched.content, limit), None)
