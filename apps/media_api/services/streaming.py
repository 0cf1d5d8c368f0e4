"""Storing a multipart file upload while it arrives.

A file that fits in one S3 part is collected in memory and stored like any other payload (so its
duplicate check runs before anything is written). A bigger one is streamed: its type is sniffed from
the first part (binary signatures are final there; text is re-checked at the end), an id is claimed,
and the bytes go to S3 part by part while they are counted and hashed. If anything fails — the size
limit, the type turning out not to be text, the client going away, S3 — the multipart upload is
aborted and the claim dropped, so no row and no object remain.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator

from apps.common.errors import APIError
from apps.common.guard import check_text_field
from apps.media_api.services.form_stream import FormStream
from apps.media_api.services.ingest import Payload, declared_type, too_large
from apps.media_api.services.media import MediaService, Stored, check_content
from apps.media_api.services.sniff import ContentInspector, Inspected, TooLarge

log = logging.getLogger(__name__)


def form_filename(form: FormStream) -> str | None:
    """The upload's name (a `filename` field, else the file part's own); 400 if Postgres cannot store it."""
    named = form.fields.get("filename")
    filename = named or form.file_name
    check_text_field(filename, "filename")  # the JSON body's fields are checked by the kit's guard
    return filename[:255] if filename else None


async def store_form(media: MediaService, user_id: str, form: FormStream, part_bytes: int) -> Stored:
    inspector = ContentInspector(media.max_bytes)
    chunks = form.file_chunks()
    head = bytearray()
    try:
        async for chunk in chunks:
            inspector.feed(chunk)
            head += chunk
            if len(head) >= part_bytes:
                break
        else:
            payload = Payload(bytes(head), inspector.finish(), declared_type(form.file_type))
            return await media.store_payload(user_id, payload, form_filename(form))
        return await _stream_rest(media, user_id, form, chunks, inspector, head, part_bytes)
    except TooLarge as exc:
        raise too_large(media.max_bytes) from exc
    finally:
        await chunks.aclose()


async def _stream_rest(
    media: MediaService,
    user_id: str,
    form: FormStream,
    chunks: AsyncGenerator[bytes, None],
    inspector: ContentInspector,
    head: bytearray,
    part_bytes: int,
) -> Stored:
    provisional = inspector.provisional_type()
    declared = declared_type(form.file_type)
    check_content(Inspected(provisional, inspector.size, ""), declared)
    claimed = await media.claim(user_id, provisional, inspector.size, None)
    upload = media.store.streaming_upload(claimed.storage_key, provisional, part_bytes)
    try:
        await upload.write(bytes(head))
        head.clear()
        async for chunk in chunks:
            inspector.feed(chunk)
            await upload.write(chunk)
        inspected = inspector.finish()
        check_content(inspected, declared)
        if inspected.mime_type != provisional:
            raise APIError(415, "The content changed type partway through.", code="unsupported_media_type")
        filename = form_filename(form)
        await upload.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            await upload.abort()
        await media.forget(claimed)
        raise
    return await media.make_ready(claimed, inspected, filename)
