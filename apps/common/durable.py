"""Writes that back an acknowledgement: retried through a short outage, or reported as a 503.

The rule (DESIGN.md, "Data"): a client is acknowledged only for what is committed. The write that
backs a 200, a `[DONE]` or a final `response.*` event goes through `durably`, which retries a
transient failure (the server stopped, restarting, or the connection cut) with short back-off until
its budget is spent, then raises `StorageUnavailable`: a 503 with `Retry-After` in the OpenAI envelope,
or an SSE `error` event when the stream has already started. Any other error (bad data, a bug) is
raised at once: retrying cannot fix it.

Each attempt is one transaction, so a failed attempt leaves nothing behind. A commit whose answer was
lost with the connection may have landed anyway; `committed`, asked before every retry, tells the
helper so, and the write is not done twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from apps.common.errors import APIError

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 1.0
RETRY_AFTER_SECONDS = 5

# SQLSTATE classes of a server that is away rather than of a bad statement: connection exceptions
# (08), operator intervention (57: shutting down, starting up), insufficient resources (53).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "57", "53")


class StorageUnavailable(APIError):
    """The database could not take a write within its retry budget."""

    def __init__(self, what: str) -> None:
        super().__init__(
            503,
            f"The service could not store {what} right now; nothing was saved. Try again shortly.",
            type="service_unavailable",
            code="storage_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def is_transient(exc: BaseException) -> bool:
    """True for a database that is away (stopped, restarting, unreachable), not for a bad write."""
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        return True  # asyncpg reports a missing socket or a refused connect as a bare OSError
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return _sqlstate(exc.orig).startswith(_TRANSIENT_SQLSTATE_CLASSES)
    name = type(exc).__module__
    if name.startswith("asyncpg"):  # raised outside a SQLAlchemy statement (e.g. while connecting)
        return _sqlstate(exc).startswith(_TRANSIENT_SQLSTATE_CLASSES) or "Connection" in type(exc).__name__
    return False


def _sqlstate(exc: BaseException | None) -> str:
    # SQLAlchemy's asyncpg adapter keeps the code on the adapted error and the original as its cause.
    for candidate in (exc, getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


async def durably(
    write: Callable[[], Awaitable[T]],
    *,
    budget: float,
    what: str,
    committed: Callable[[], Awaitable[bool]] | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T | None:
    """Run `write` (one transaction) until it succeeds or `budget` seconds are spent.

    Returns what `write` returned, or None when `committed` found an earlier attempt had landed.
    Raises `StorageUnavailable` when the store stayed away; other errors as they are. `transient`
    tells an absent store from a refused write (by default, for a database; a write through
    another service passes its own, and must be idempotent, since a lost answer is retried).
    """
    deadline = time.monotonic() + budget
    delay = FIRST_DELAY
    attempt = 0
    while True:
        try:
            if attempt and committed is not None and await committed():
                return None
            attempt += 1
            async with asyncio.timeout(max(deadline - time.monotonic(), FIRST_DELAY)):
                return await write()
        except Exception as exc:
            if not (transient(exc) or isinstance(exc, TimeoutError)):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("storing %s failed after %d attempts: %r", what, attempt, exc)
                raise StorageUnavailable(what) from exc
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, MAX_DELAY)
