"""`/v1/media`: upload (server-proxied or direct to S3), read, list and delete media objects.

`POST /v1/media` takes either a JSON body (`source` is a data URL or a remote URL) or a multipart form
with a `file` part, so it reads the request itself and picks the parser by content type. A form is
streamed to S3 as it arrives (services/streaming), never spooled to the pod's small `/tmp`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError

from apps.common.auth.principal import PrincipalDep
from apps.common.errors import APIError
from apps.common.guard import GuardedRoute
from apps.common.ids import jan_id
from apps.common.openapi import error_responses
from apps.media_api.deps import FetcherDep, MediaDep, SettingsDep
from apps.media_api.schemas import (
    CreateMediaRequest,
    DataUrlSource,
    MediaDeleted,
    MediaInfo,
    MediaList,
    MediaUpload,
    PreparedUpload,
    PrepareUploadRequest,
    PresignedMedia,
)
from apps.media_api.services.form_stream import FormStream
from apps.media_api.services.ingest import read_data_url, read_remote
from apps.media_api.services.media import MediaService, Stored
from apps.media_api.services.streaming import store_form

router = APIRouter(prefix="/v1/media", tags=["media"], route_class=GuardedRoute)


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$defs` references inlined, as a hand-written OpenAPI body needs it."""
    definitions = schema.pop("$defs", {})

    def expand(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return expand(definitions[ref.removeprefix("#/$defs/")])
            # A discriminator maps to `$defs` names, which mean nothing once inlined.
            return {key: expand(value) for key, value in node.items() if key != "discriminator"}
        if isinstance(node, list):
            return [expand(item) for item in node]
        return node

    expanded: dict[str, Any] = expand(schema)
    return expanded


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_refs(CreateMediaRequest.model_json_schema())},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "filename": {"type": "string"},
                    },
                }
            },
        },
    }
}


def upload_view(media: MediaService, stored: Stored) -> MediaUpload:
    info = MediaInfo.of(stored.media)
    url = media.store.presign_get(stored.media.storage_key)
    expires_at = int(time.time()) + media.store.ttl
    return MediaUpload(**info.model_dump(), deduplicated=stored.deduplicated, url=url, expires_at=expires_at)


@router.post("", openapi_extra=_UPLOAD_BODY, responses=error_responses(409, 415))
async def create_media(
    request: Request, principal: PrincipalDep, media: MediaDep, fetcher: FetcherDep, settings: SettingsDep
) -> MediaUpload:
    """Upload media from a data URL, a remote URL or a multipart file."""
    raw_type = request.headers.get("content-type", "")
    content_type = raw_type.lower()
    limit = settings.media_max_bytes
    if content_type.startswith("multipart/form-data"):
        form = FormStream(raw_type, request.stream())  # the boundary is case-sensitive
        stored = await store_form(media, principal.user_id, form, settings.media_upload_part_bytes)
        return upload_view(media, stored)
    if content_type.startswith("application/json"):
        body = _parse_json(await request.body())
        filename = body.filename
        if isinstance(body.source, DataUrlSource):
            payload = read_data_url(body.source.data_url, limit)
        else:
            payload = await read_remote(fetcher, body.source.url, limit)
    else:
        message = "Send a JSON body ({\"source\": …}) or a multipart/form-data form with a 'file' part."
        raise APIError(415, message, code="unsupported_content_type")
    stored = await media.store_payload(principal.user_id, payload, filename)
    return upload_view(media, stored)


def _parse_json(raw: bytes) -> CreateMediaRequest:
    try:
        return CreateMediaRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


@router.post("/prepare-upload", responses=error_responses(415))
async def prepare_upload(
    body: PrepareUploadRequest, principal: PrincipalDep, media: MediaDep
) -> PreparedUpload:
    """Reserve an id and a presigned PUT for a direct upload to S3; then call `complete`."""
    reserved, upload = await media.reserve(
        principal.user_id, body.mime_type, body.bytes, body.sha256, body.filename
    )
    return PreparedUpload(
        id=jan_id(reserved.id),
        upload_url=upload.url,
        headers=upload.headers,
        expires_at=int(time.time()) + media.store.ttl,
    )


@router.post("/{media_id}/complete", responses=error_responses(409, 410, 415))
async def complete_upload(media_id: str, principal: PrincipalDep, media: MediaDep) -> MediaUpload:
    """Verify a direct upload (type, size, hash read back from S3) and make it ready."""
    stored = await media.complete(principal.user_id, media_id)
    return upload_view(media, stored)


@router.get("")
async def list_media(
    principal: PrincipalDep,
    media: MediaDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> MediaList:
    """The caller's media, newest first; pass the last id as `after` for the next page."""
    rows, has_more = await media.list(principal.user_id, limit=limit, after=after)
    data = [MediaInfo.of(row) for row in rows]
    return MediaList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{media_id}")
async def get_media(media_id: str, principal: PrincipalDep, media: MediaDep) -> MediaInfo:
    """Metadata of one media object."""
    return MediaInfo.of(await media.get(principal.user_id, media_id))


@router.get("/{media_id}/presign", responses=error_responses(409))
async def presign_media(media_id: str, principal: PrincipalDep, media: MediaDep) -> PresignedMedia:
    """A fresh presigned GET URL for one of the caller's objects, with its expiry.

    Only the owner gets one (anyone else's id is a 404, as for a missing one); an upload not yet
    completed is a 409. The URL is signed here, without a call to the object store.
    """
    stored = await media.get_ready(principal.user_id, media_id)
    ttl = media.store.ttl
    signed_at = int(time.time())  # before signing, so `expires_at` is never later than the URL's own
    return PresignedMedia(
        id=jan_id(stored.id),
        url=media.store.presign_get(stored.storage_key),
        mime_type=stored.mime_type,
        expires_in=ttl,
        expires_at=signed_at + ttl,
    )


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The bytes (when the service streams them itself).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    307: {
        "description": "A redirect to a presigned GET URL of the object store.",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    **error_responses(409),
}


@router.get("/{media_id}/content", response_class=Response, responses=_CONTENT_RESPONSES)
async def get_content(
    media_id: str, principal: PrincipalDep, media: MediaDep, settings: SettingsDep
) -> Response:
    """The bytes: a redirect to a presigned GET, or streamed through the service when configured."""
    stored = await media.get_ready(principal.user_id, media_id)
    if settings.media_proxy_download:
        return StreamingResponse(
            media.store.stream(stored.storage_key),
            media_type=stored.mime_type,
            headers={"Content-Length": str(stored.bytes), "X-Content-Type-Options": "nosniff"},
        )
    return RedirectResponse(media.store.presign_get(stored.storage_key), status_code=307)


@router.delete("/{media_id}")
async def delete_media(media_id: str, principal: PrincipalDep, media: MediaDep) -> MediaDeleted:
    """Delete the row and the stored object."""
    await media.delete(principal.user_id, media_id)
    return MediaDeleted(id=media_id)
