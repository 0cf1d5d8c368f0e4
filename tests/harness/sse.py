"""Reading a server-sent event stream off the wire, as an SSE client does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """Each event's `data` (its `data:` lines joined by newlines), in order; comments and other
    fields are skipped, and an event is dispatched at the blank line that ends it (or at the end
    of the stream)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)
