"""Presigned GET URLs that resolve hands out again for a short while, for `/v1/media/resolve`.

Signing a URL is boto3's `generate_presigned_url`: about 0.3-0.4 ms of CPU, most of a one-image
resolve once the ready-id cache (ready_cache.py) spares the query. Resolve runs before every inference
that carries media and the same images come back turn after turn, so the URL signed for one turn is
handed out again on the next ones, for at most `reuse` seconds.

What keeps the promise that a resolved URL is valid for at least `ttl` seconds
(`MEDIA_S3_PRESIGN_TTL`): a URL kept here is signed for `ttl + reuse + 1` seconds and given out only
while less than `reuse` seconds old, so whatever turn gets it still has more than `ttl` seconds of it
(the extra second covers X-Amz-Date, which is the signing time rounded down to the second). With
temporary credentials (IRSA, Pod Identity) a URL also ends when the credentials that signed it do;
botocore replaces them while at least 10 minutes remain, so `ttl + reuse` stays under that margin
with the default TTL (the setting's bound keeps `reuse` at most 4 minutes).

What keeps it scoped: entries are keyed by (owner, storage key), and resolve asks only for keys the
owner's own ready ids gave it (the query or the ready-id cache), so nobody gets a URL for a key that
is not theirs. A deleted media stops resolving because its id stops resolving (its entry here is
never reached again and goes with the next clear); a URL given out before points at an object that is
gone (S3 answers 404).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Signer = Callable[[str, int], str]  # (storage key, expires in seconds) -> URL


class PresignedUrls:
    def __init__(
        self,
        sign: Signer,
        ttl: int,
        reuse: float,
        max_entries: int = 10_000,  # URLs are ~0.6 KB, ~1.5 KB with a session token
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sign = sign
        self._ttl = ttl
        self._reuse = reuse
        self._expires_in = ttl + math.ceil(reuse) + 1
        self._max = max_entries
        self._clock = clock
        self._urls: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, owner: str, key: str) -> str:
        """A GET URL of `key` valid for at least `ttl` more seconds: a recent one, or a new one."""
        if self._reuse <= 0:
            return self._sign(key, self._ttl)
        now = self._clock()
        known = self._urls.get((owner, key))
        if known is not None and now - known[1] < self._reuse:
            return known[0]
        url = self._sign(key, self._expires_in)  # signed after `now`: its age is never understated
        if len(self._urls) >= self._max:
            self._urls.clear()  # rare (a burst of distinct images): cheaper than tracking age order
        self._urls[owner, key] = (url, now)
        return url
