"""The route table: the one place that says which public path goes to which app.

The local all-in-one server (`make dev`) dispatches with it, and the platform program generates Kong's
declarative config from it; a test proves the two agree. Prefixes match whole path segments
(`/v1/media` matches `/v1/media` and `/v1/media/…`, not `/v1/mediax`), longest prefix first.

`auth` says whether the app requires credentials on that prefix (the apps enforce it themselves; a
test checks each such prefix answers 401 without them). `public=False` routes are reachable in local
mode only: in a cluster they stay inside the mesh (Kong does not expose them).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AppName(StrEnum):
    LLM_API = "llm-api"
    RESPONSE_API = "response-api"
    MEDIA_API = "media-api"
    MCP_TOOLS = "mcp-tools"


@dataclass(frozen=True, slots=True)
class AppSpec:
    """Where an app lives: its Python package, its port in a cluster, its database schema."""

    name: AppName
    package: str
    port: int
    schema: str | None


APPS: dict[AppName, AppSpec] = {
    AppName.LLM_API: AppSpec(AppName.LLM_API, "apps.llm_api", 8080, "llm_api"),
    AppName.RESPONSE_API: AppSpec(AppName.RESPONSE_API, "apps.response_api", 8082, "response_api"),
    AppName.MEDIA_API: AppSpec(AppName.MEDIA_API, "apps.media_api", 8285, "media_api"),
    AppName.MCP_TOOLS: AppSpec(AppName.MCP_TOOLS, "apps.mcp_tools", 8091, "mcp_tools"),
}


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    app: AppName
    auth: bool = True
    timeout_seconds: float = 60.0
    rate_limit_per_minute: int | None = 600
    streaming: bool = False
    public: bool = True

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")


# Streaming routes get long timeouts: a gateway read timeout is the longest silence allowed between
# two chunks, and a model can think for minutes before its first token.
ROUTES: tuple[Route, ...] = (
    Route(
        "/v1/chat/completions",
        AppName.LLM_API,
        timeout_seconds=600,
        rate_limit_per_minute=120,
        streaming=True,
    ),
    Route("/v1/models", AppName.LLM_API),
    Route("/v1/conversations", AppName.LLM_API),
    Route("/v1/projects", AppName.LLM_API),
    Route("/v1/auth/guest-login", AppName.LLM_API, auth=False, rate_limit_per_minute=30),
    Route("/v1/auth/refresh", AppName.LLM_API, auth=False, rate_limit_per_minute=60),
    # Browser login; logout and revoke are authenticated by the refresh token in their body.
    Route("/v1/auth/login", AppName.LLM_API, auth=False, rate_limit_per_minute=60),
    Route("/v1/auth/callback", AppName.LLM_API, auth=False, rate_limit_per_minute=60),
    Route("/v1/auth/logout", AppName.LLM_API, auth=False, rate_limit_per_minute=60),
    Route("/v1/auth/revoke", AppName.LLM_API, auth=False, rate_limit_per_minute=60),
    Route("/v1/auth", AppName.LLM_API),
    Route("/v1/admin", AppName.LLM_API),
    Route(
        "/v1/responses", AppName.RESPONSE_API, timeout_seconds=600, rate_limit_per_minute=100, streaming=True
    ),
    Route("/v1/media", AppName.MEDIA_API, timeout_seconds=120, rate_limit_per_minute=120),
    Route("/v1/mcp", AppName.MCP_TOOLS, timeout_seconds=180, rate_limit_per_minute=300, streaming=True),
    # The local issuer's keys. In a cluster the issuer is Keycloak, which publishes its own.
    Route("/.well-known/jwks.json", AppName.LLM_API, auth=False, rate_limit_per_minute=None, public=False),
    # The local identity provider (apps/llm_api/auth/routes/provider.py); Keycloak's in a cluster.
    Route("/.well-known/openid-configuration", AppName.LLM_API, auth=False, public=False),
    Route("/oidc", AppName.LLM_API, auth=False, rate_limit_per_minute=60, public=False),
    # Service-to-service endpoints (API-key validation); guarded by the internal token as well.
    Route("/internal", AppName.LLM_API, auth=False, rate_limit_per_minute=None, public=False),
)


def match(path: str, routes: tuple[Route, ...] = ROUTES) -> Route | None:
    """The longest-prefix route for `path`, or None."""
    best: Route | None = None
    for route in routes:
        if route.matches(path) and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best
