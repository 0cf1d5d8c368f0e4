"""The public API's one CORS policy, for the apps' middleware (`apps.common.service`) and Kong's
`cors` plugin (`infra.specs.kong`), so a browser gets the same answer from `make dev` as behind Kong.

Only the origins differ per deployment (settings or the stack's `gateway.corsOrigins`). Decisions:
- No credentials: clients authenticate with `Authorization: Bearer …` or `X-API-Key`, never with
  cookies, so a browser need not send ambient credentials and none of our responses invites it.
- Request headers: what the OpenAI SDKs and our clients send (auth, content type, idempotency and
  request ids, `OpenAI-Beta`) and MCP's streamable HTTP session headers.
- Exposed: `X-Request-Id` (support asks for it) and `Mcp-Session-Id` (an MCP client must read it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    exposed_headers: tuple[str, ...]
    credentials: bool
    max_age_seconds: int


CORS = CorsPolicy(
    methods=("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
    headers=(
        "Authorization",
        "Content-Type",
        "X-API-Key",
        "Idempotency-Key",
        "X-Request-Id",
        "OpenAI-Beta",
        "Mcp-Session-Id",
        "Mcp-Protocol-Version",
    ),
    exposed_headers=("X-Request-Id", "Mcp-Session-Id"),
    credentials=False,
    max_age_seconds=3600,
)
