"""The one way apps build outbound HTTP clients: explicit timeouts and pooled connections."""

from __future__ import annotations

import httpx

DEFAULT_CONNECT_TIMEOUT = 5.0


def make_client(
    *,
    timeout: float | None = 30.0,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    base_url: str = "",
    max_connections: int = 200,
    max_keepalive: int = 50,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose every timeout is stated (`timeout=None` means reads may wait forever)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive),
        headers=headers,
        follow_redirects=follow_redirects,
    )
