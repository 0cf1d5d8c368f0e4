"""Waiting for a condition the server reaches on its own time (a commit, a released slot)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

T = TypeVar("T")

# Loopback requests in tests are given this long, not httpx's default 5 s: on a 2-core machine running
# other work, a first request to a just-started app was seen taking longer than 5 s.
CLIENT_TIMEOUT = 60.0


def eventually(condition: Callable[[], T | Literal[False] | None], timeout: float = 30.0) -> T:
    """Poll `condition` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return result


async def eventually_async(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0
) -> None:
    """Poll `check` (plain, or a coroutine function: a read over the wire) until it holds."""
    deadline = time.monotonic() + timeout
    while not await _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


async def _holds(check: Callable[[], bool] | Callable[[], Awaitable[bool]]) -> bool:
    result = check()
    return bool(await result) if inspect.isawaitable(result) else bool(result)
