"""API-key checks for apps that do not own the keys: ask llm-api, remember the answer, follow revocations.

Answers are cached for `ttl_seconds` (keyed by the SHA-256 of the key, never the key, which is also
how llm-api stores it), so a burst of requests with one key costs one round trip. A revoked key
must be refused everywhere within a second, so a cached "valid" is trusted only while it is
provably fresh:

- while valid keys are cached, a background task polls llm-api's revocation feed
  (`GET /internal/api-keys/revocations?since=…`, every `POLL_SECONDS`) and drops every key it
  names (revoked or just expired);
- a cached "valid" is used only if it was fetched, or the feed was last read successfully, less
  than `FRESH_SECONDS` ago; otherwise the key is asked about again (and an unreachable llm-api is a
  503, never a stale yes).

The same feed names guests that became registered accounts (`ended_guests`, subjects): their guest
tokens must stop working everywhere, although a JWT is checked locally. While guest tokens are seen
(and for `GUEST_WATCH_SECONDS` after), the feed is followed as for keys; a guest token is trusted
only when the feed was read less than `FRESH_SECONDS` ago, else the feed is read first (from
`GUEST_LOOKBACK_SECONDS` back when the watch starts, which must exceed the guest access-token
lifetime). A registered account's subject is the guest's, so only tokens with the `guest` role are
refused; cached keys of such a subject are dropped so they come back with the `user` role.

Shutdown: the app closes the resolver (`aclose`) before the HTTP client they share. From then on no
poller starts (a request still in flight may finish its key check after `aclose` and would
otherwise start one, which then read the feed through the closed client: a `RuntimeError`, logged
as an unretrieved task exception), and a check that has not yet asked llm-api is a 503.

Why a feed over HTTP rather than Postgres `LISTEN`/`NOTIFY`: in a cluster each app has its own
database (see `infra/database.py`), and a notification does not cross databases; the feed works
wherever the validation endpoint does, with the same internal token. Polling runs only while there
is something to drop, so an app whose callers use tokens only never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
from dataclasses import dataclass

import httpx

from apps.common.auth.principal import Principal
from apps.common.errors import APIError

log = logging.getLogger(__name__)

INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 - a header name
REVOCATIONS_PATH = "/internal/api-keys/revocations"  # llm-api's route (its access log keeps it quiet)
POLL_SECONDS = 0.25
FRESH_SECONDS = 0.8
_MAX_ENTRIES = 10_000
GUEST_WATCH_SECONDS = 60.0
GUEST_LOOKBACK_SECONDS = 86_400.0


@dataclass(frozen=True)
class _Entry:
    expires: float  # monotonic
    fetched: float  # monotonic
    fetched_wall: float  # epoch seconds, the feed's cursor when nothing newer is known
    principal: Principal | None


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def revocations_url(validation_url: str) -> str:
    """The feed lives next to the validation endpoint (`…/api-keys/validate` -> `…/api-keys/revocations`)."""
    return validation_url.rsplit("/", 1)[0] + "/revocations"


class RemoteAPIKeyResolver:
    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        internal_token: str | None,
        ttl_seconds: float = 30.0,
        feed_url: str | None = None,
    ) -> None:
        self._url = url
        self._feed_url = feed_url or revocations_url(url)
        self._client = client
        self._headers = {INTERNAL_TOKEN_HEADER: internal_token} if internal_token else {}
        self._ttl = ttl_seconds
        self._cache: dict[str, _Entry] = {}
        self._cursor: float | None = None  # llm-api's clock, from its last feed answer
        self._polled = float("-inf")  # monotonic start of the last successful feed read
        self._poller: asyncio.Task[None] | None = None
        self._feed_failing = False
        self._ended_guests: dict[str, float] = {}  # subject -> monotonic time it may be forgotten
        self._guest_watch = float("-inf")  # monotonic time until which the feed is followed for guests
        self._guests_synced = False  # ended guests read from the look-back start of the current watch
        self._sync_lock = asyncio.Lock()
        self._closed = False  # `aclose` ran: the client may be closed next, so it is not used again

    async def guest_ended(self, principal: Principal) -> bool:
        if not self._headers:
            return False  # no internal token, no feed (nor key checks): guest tokens live out their time
        self._guest_watch = time.monotonic() + GUEST_WATCH_SECONDS
        if not self._guests_fresh():
            async with self._sync_lock:
                if not self._guests_fresh():
                    await self._sync_guests()
            self._follow()
        return principal.subject in self._ended_guests

    def _guests_fresh(self) -> bool:
        return self._guests_synced and time.monotonic() - self._polled < FRESH_SECONDS

    async def _sync_guests(self) -> None:
        cursor = self._cursor
        since = cursor if self._guests_synced and cursor is not None else time.time() - GUEST_LOOKBACK_SECONDS
        started = time.monotonic()
        try:
            await self._read_feed(since)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise APIError(503, "Session checks are unavailable; try again shortly.") from exc
        self._polled = started
        self._guests_synced = True

    async def resolve(self, api_key: str) -> Principal | None:
        digest = key_digest(api_key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached.expires > now and self._trusted(cached, now):
            return cached.principal
        principal = await self._ask(api_key)
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache.clear()
        self._cache[digest] = _Entry(now + self._ttl, now, time.time(), principal)
        if principal is not None:
            self._follow()
        return principal

    def forget(self, digests: list[str]) -> None:
        for digest in digests:
            self._cache.pop(digest, None)

    async def aclose(self) -> None:
        """Stop following the feed, and wait for the poller to end; call before closing the client."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    def _trusted(self, entry: _Entry, now: float) -> bool:
        if entry.principal is None:
            return True  # a key that was not valid does not become valid
        return now - entry.fetched < FRESH_SECONDS or now - self._polled < FRESH_SECONDS

    def _follow(self) -> None:
        if self._closed:
            return
        if self._poller is None or self._poller.done():
            # A fresh context: the poller outlives the request that started it (and its request id).
            loop = asyncio.get_running_loop()
            self._poller = loop.create_task(self._poll_loop(), context=contextvars.Context())

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            now = time.monotonic()
            live = [e for e in self._cache.values() if e.principal is not None and e.expires > now]
            if not live and self._guest_watch <= now:
                self._cursor = None  # nothing to drop; the next cached key starts a new watch
                self._guests_synced = False
                return
            if self._cursor is not None:
                since = self._cursor
            elif live:
                since = min(e.fetched_wall for e in live)
            else:
                since = time.time() - GUEST_LOOKBACK_SECONDS
            try:
                await self._read_feed(since)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                if not self._feed_failing:  # once per outage, not four times a second
                    log.warning("API-key revocation feed unavailable", extra={"error": repr(exc)})
                self._feed_failing = True
                continue
            self._feed_failing = False
            self._polled = now

    async def _read_feed(self, since: float) -> None:
        self._check_open()
        response = await self._client.get(self._feed_url, params={"since": since}, headers=self._headers)
        response.raise_for_status()
        data = response.json()
        self.forget([str(digest) for digest in data["revoked"]])
        ended = {str(subject) for subject in data.get("ended_guests", [])}
        if ended:
            now = time.monotonic()
            if len(self._ended_guests) > _MAX_ENTRIES:  # past the look-back, no guest token is left
                self._ended_guests = {s: t for s, t in self._ended_guests.items() if t > now}
            self._ended_guests.update(dict.fromkeys(ended, now + GUEST_LOOKBACK_SECONDS))
            self.forget([d for d, e in self._cache.items() if e.principal and e.principal.subject in ended])
        self._cursor = float(data["until"])

    def _check_open(self) -> None:
        if self._closed:
            raise APIError(503, "The service is shutting down; try again shortly.")

    async def _ask(self, api_key: str) -> Principal | None:
        self._check_open()
        try:
            response = await self._client.post(self._url, json={"api_key": api_key}, headers=self._headers)
        except httpx.HTTPError as exc:
            raise APIError(503, "API key validation is unavailable; try again shortly.") from exc
        # 400: llm-api could not even read the value as a key, so it is not a valid one either.
        if response.status_code in (400, 401, 404):
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
