"""API-key checks for apps that do not own the keys: ask llm-api, and remember the answer briefly.

Positive and negative answers are cached for `ttl_seconds` (keyed by a hash of the key, never the key),
so a burst of requests with one key costs one round trip. Revocation therefore takes effect within
the TTL in these apps (immediately in llm-api).
"""

from __future__ import annotations

import hashlib
import time

import httpx

from apps.common.auth.principal import Principal
from apps.common.errors import APIError

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 - a header name
_MAX_ENTRIES = 10_000


class RemoteAPIKeyResolver:
    def __init__(
        self, *, url: str, client: httpx.AsyncClient, internal_token: str | None, ttl_seconds: float = 30.0
    ) -> None:
        self._url = url
        self._client = client
        self._headers = {INTERNAL_TOKEN_HEADER: internal_token} if internal_token else {}
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, api_key: str) -> Principal | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self._ask(api_key)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, principal)
        return principal

    async def _ask(self, api_key: str) -> Principal | None:
        try:
            response = await self._client.post(self._url, json={"api_key": api_key}, headers=self._headers)
        except httpx.HTTPError as exc:
            raise APIError(503, "API key validation is unavailable; try again shortly.") from exc
        if response.status_code in (401, 404):
            return None
        if response.status_code != 200:
            raise APIError(503, "API key validation is unavailable; try again shortly.")
        data = response.json()
        return Principal(
            subject=str(data["subject"]),
            issuer=str(data["issuer"]),
            auth_method="api_key",
            credential=api_key,
            roles=frozenset(data.get("roles", [])),
            email=data.get("email"),
            name=data.get("name"),
            api_key_id=data.get("key_id"),
        )
