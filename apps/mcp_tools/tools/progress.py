"""Progress of long tools, as MCP progress notifications (`notifications/progress`).

A long tool (python_exec, scrape, file indexing) waits on one backend call that says nothing until
it ends, so its progress is time: the caller is told when the work starts (progress 0) and then every
`TOOL_PROGRESS_SECONDS` how long it has run, against the time limit when there is one (`total`).
Notifications reach only callers that asked for them (a progress token; see `server.py`); for the
others `report_progress` does nothing, so this costs them nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import TypeVar

from apps.mcp_tools.tools.context import ToolContext

T = TypeVar("T")


async def with_progress(
    ctx: ToolContext, work: Awaitable[T], *, what: str, every: float, total: float | None = None
) -> T:
    """Await `work`, reporting that it started and then, every `every` seconds, how long it has run."""
    await ctx.report_progress(0, total, f"{what}: started")
    task = asyncio.ensure_future(work)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            elapsed = round(time.monotonic() - started, 1)
            await ctx.report_progress(elapsed, total, f"{what}: running for {elapsed:g} s")
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
