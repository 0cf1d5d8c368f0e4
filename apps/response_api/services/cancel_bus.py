"""What crosses replicas: Postgres `LISTEN`/`NOTIFY`, one listening connection per replica.

Two channels:
- `response_api_cancel` (cancels). A response runs on the replica that created it; a cancel request
  may land on any replica. The one that receives it marks the response cancelled and, in the same
  transaction, sends `NOTIFY response_api_cancel, '<response id>'` (see
  `ResponseStore.mark_cancelled`). Every replica cancels the response if it runs it. While the
  listener reconnects after its connection dropped, cancels still mark the response, and the running
  replica finds out only when the listener is back.
- `response_api_events` (stream followers). The replica running a streamed background response
  writes its events in batches (`services/events.py`); each batch's statement also sends
  `NOTIFY response_api_events, '<response id>'`, delivered at commit. Followers on every replica wait
  for that instead of polling; since a notice can be missed while the listener reconnects, they also
  look again after a quiet interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "response_api_cancel"
EVENTS_CHANNEL = "response_api_events"
RECONNECT_SECONDS = 1.0


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class NotifyListener:
    """Calls `handlers[channel](payload)` for every notice on the channels it is given."""

    def __init__(self, url: str, handlers: dict[str, Callable[[str], None]]) -> None:
        self._dsn = asyncpg_dsn(url)
        self._handlers = handlers
        self._connection: Any = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    async def begin(self) -> None:
        """Start listening; if the database is not up yet, keep trying in the background."""
        try:
            await self.start()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("notify listener could not connect; retrying", extra={"error": repr(exc)})
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def start(self) -> None:
        self._connection = await asyncpg.connect(self._dsn)
        self._connection.add_termination_listener(self._lost)
        for channel in self._handlers:
            await self._connection.add_listener(channel, self._notified)

    async def stop(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

    def _notified(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self._handlers[channel](payload)

    def _lost(self, _connection: Any) -> None:
        if not self._closed:
            log.warning("notify listener lost its database connection; reconnecting")
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_SECONDS)
            try:
                await self.start()
                return
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("notify listener could not reconnect", extra={"error": repr(exc)})
