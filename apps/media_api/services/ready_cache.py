"""A short-lived, owner-scoped memory of which media ids are ready, for `/v1/media/resolve`.

Resolve runs before every inference that carries media, and the same ids come back turn after turn
(a conversation re-sends its images; a tool loop re-sends the whole history each round). Its one
database query was most of its cost, so the storage keys it finds are remembered here for
`ttl` seconds.

What keeps this exact:
- entries are keyed by (owner, id): a hit is the same answer the query gives that owner, and
  another user's lookup of the same id never sees it;
- only ready rows are remembered, and a ready row's storage key never changes; an id that is
  missing, pending or another user's is never remembered, so an upload that completes is
  resolvable at once;
- deleting a row forgets it on this replica at once. Another replica may still resolve a deleted
  id for at most `ttl` seconds: the URL then points at an object that is gone (S3 answers 404),
  never at anyone else's bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Key = tuple[str, int]


class ReadyKeyCache:
    def __init__(
        self, ttl: float, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[Key, tuple[str, float]] = {}

    def split(self, user_id: str, media_ids: set[int]) -> tuple[dict[int, str], set[int]]:
        """The ids this owner had resolved within `ttl` (with their keys), and the rest."""
        now = self._clock()
        found: dict[int, str] = {}
        unknown: set[int] = set()
        for media_id in media_ids:
            entry = self._entries.get((user_id, media_id))
            if entry is not None and entry[1] > now:
                found[media_id] = entry[0]
            else:
                unknown.add(media_id)
        return found, unknown

    def remember(self, user_id: str, keys: dict[int, str]) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) + len(keys) > self._max:
            self._entries.clear()  # rare (a burst of distinct ids): cheaper than tracking age order
        expires = self._clock() + self._ttl
        for media_id, key in keys.items():
            self._entries[user_id, media_id] = (key, expires)

    def forget(self, user_id: str, media_id: int) -> None:
        self._entries.pop((user_id, media_id), None)
