"""`data:<mime>;jan_<id>` placeholders → fresh presigned GET URLs, for llm-api before inference.

This runs before every inference that carries media, so it works on the raw JSON bytes: the body is
parsed once (orjson, to refuse what is not `{"payload": …}`), the placeholders are found and replaced
by one regex pass over the bytes, and the result is sent back as it came, wrapper included. Nothing of
the payload is rebuilt, so its structure, key order and numbers are untouched. The replacement is safe
inside JSON strings because presigned URLs contain no quote, backslash or control character.

All ids of one payload are looked up with one query, restricted to the caller's ready objects; any id
that is unknown, pending or another user's answers 404 naming it (and every other missing id).
The declared mime in a placeholder is not checked against the stored type: the URL serves the stored
bytes with their real type either way. Ids and URLs are remembered for a few seconds (ready_cache.py,
url_cache.py), so a conversation re-sending its images costs neither a query nor a signature.
"""

from __future__ import annotations

import re

import orjson

from apps.common.errors import APIError
from apps.common.ids import parse_jan_id
from apps.media_api.services.media import MediaService
from apps.media_api.services.storage import ObjectStore
from apps.media_api.services.url_cache import PresignedUrls

# Any `jan_<alphanumerics>` counts (the reference system's ULID ids too), so that nothing that looks
# like a placeholder passes through unresolved: what is not one of our snowflakes is simply unknown.
# `\/` too: JSON encoders may escape the slash, and this runs on the encoded text.
PLACEHOLDER = re.compile(rb"data:[A-Za-z0-9.+-]+\\?/[A-Za-z0-9.+-]+;(jan_[A-Za-z0-9]+)")


def placeholder_ids(body: bytes) -> set[str]:
    return {match.group(1).decode() for match in PLACEHOLDER.finditer(body)}


def check_envelope(body: bytes) -> None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, "We could not parse the JSON body of your request.", code="invalid_json") from exc
    if not isinstance(document, dict) or "payload" not in document:
        raise APIError(
            400, 'The body must be {"payload": <any JSON>}.', param="payload", code="invalid_value"
        )
    extra = sorted(set(document) - {"payload"})
    if extra:
        raise APIError(400, f"Unknown field '{extra[0]}'.", param=extra[0], code="invalid_value")


class Resolver:
    def __init__(self, media: MediaService, store: ObjectStore, url_reuse_seconds: float = 0.0) -> None:
        self.media = media
        self.urls = PresignedUrls(store.presign_get, store.ttl, url_reuse_seconds)

    async def resolve(self, user_id: str, body: bytes) -> bytes:
        check_envelope(body)
        idents = placeholder_ids(body)
        if not idents:
            return body
        numbers = {ident: parse_jan_id(ident) for ident in idents}
        keys = await self.media.ready_keys(user_id, {n for n in numbers.values() if n is not None})
        found = {ident: keys[n] for ident, n in numbers.items() if n is not None and n in keys}
        missing = sorted(idents - found.keys())
        if missing:
            names = ", ".join(f"'{ident}'" for ident in missing)
            noun = "Media" if len(missing) == 1 else "Media ids"
            raise APIError(404, f"{noun} {names} not found.", param="payload", code="media_not_found")
        urls = {ident: self.urls.get(user_id, key).encode() for ident, key in found.items()}
        return PLACEHOLDER.sub(lambda match: urls[match.group(1).decode()], body)
