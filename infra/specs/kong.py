"""Kong's DB-less declarative config (`kong.yml`), generated from the route table.

The route table (`apps.gateway.routes`) is the one source of truth; this module turns its public routes
into Kong entities (the tests hold them to the table with Kong's own matching rules). Decisions:

- Paths are regexes, `~/v1/media(?:/|$)`: Kong anchors regex paths at the start, so this matches
  `/v1/media` and `/v1/media/…` but not `/v1/mediax`, exactly like `Route.matches`. (A plain Kong prefix
  `/v1/media` would also take `/v1/mediax`.) `strip_path: false`: the apps serve the full public path.
- Longest prefix wins: Kong orders regex routes by `regex_priority` (then by path length under the
  `traditional_compatible` router), so each route gets `regex_priority = len(prefix)`; that makes
  `/v1/auth/guest-login` win over `/v1/auth` under either router flavour.
- Timeouts and retries are *service* fields in Kong (a route has none). A Kong service is therefore one
  app at one timeout/retry profile: `llm-api` (60 s), `llm-api-600s` (chat completions), and so on. All
  of an app's services share its in-cluster URL. Read and write timeouts are the route's
  `timeout_seconds` (for streaming routes that is the longest silence allowed between two chunks);
  connecting is short (5 s).
- Retries: Kong retries a request whose connection or upstream read failed, and it cannot tell methods
  apart per service. Every prefix of the table takes POST (a retried chat completion costs a second
  generation, a retried guest login makes a second account), so retries are 0 except for the prefixes
  named in `retryable_prefixes`, which serve only idempotent reads (`/v1/models`).
- Streaming routes turn off response buffering, or nginx would hold server-sent events back.
- Rate limits: the `rate-limiting` plugin per route, `policy: local`, limited by client IP (we have no
  Kong consumers; the apps authenticate). With local counters the effective limit is per Kong replica.
- CORS: one global `cors` plugin from the configured origins (none configured: no plugin) with the
  apps' policy (`apps.common.cors`).
- Request ids: the global `correlation-id` plugin uses `X-Request-Id` (the header the apps log and
  echo), generating one when the client sent none, and echoes it to the client.
- Headers toward the apps (`request-transformer`, per route): `X-Jan-Gateway: kong` and `X-Jan-Route`
  (the matched prefix) are set by Kong, never taken from the client; `X-Internal-Token` is removed, since
  only services inside the cluster may present the internal credential.
- Traces: the `opentelemetry` plugin exports to the collector when an endpoint is given (Kong itself
  must run with `tracing_instrumentations`/`tracing_sampling_rate`, see `kong_env`); W3C
  `traceparent` is injected so the apps' spans join Kong's trace.
- Metrics: the global `prometheus` plugin (scraped on Kong's status port by a ServiceMonitor).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.common.cors import CORS
from apps.gateway.routes import APPS, ROUTES, AppName, Route

REQUEST_ID_HEADER = "X-Request-Id"
INTERNAL_TOKEN_HEADER = "X-Internal-Token"  # noqa: S105 - a header name
GATEWAY_HEADER = "X-Jan-Gateway"
ROUTE_HEADER = "X-Jan-Route"
_REGEX_META = set(".^$*+?()[]{}|\\")


class KongInputs(BaseModel):
    """What the generated config depends on besides the route table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1)
    cors_origins: tuple[str, ...] = ()
    # OTLP/HTTP traces endpoint of the collector, e.g. http://otel-collector.observability:4318/v1/traces
    otel_traces_endpoint: str | None = None
    connect_timeout_seconds: float = Field(5.0, gt=0)
    retryable_prefixes: tuple[str, ...] = ("/v1/models",)
    retries: int = Field(2, ge=0, le=10)

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port] (no path, no '*')")
        return origins


def app_url(app: AppName, inputs: KongInputs) -> str:
    # Each app's Helm release, hence its Service, is named after the app.
    return f"http://{app.value}.{inputs.namespace}.svc.cluster.local:{APPS[app].port}"


def path_regex(prefix: str) -> str:
    """Kong path for a table prefix: the prefix as a whole path segment sequence."""
    escaped = "".join(f"\\{char}" if char in _REGEX_META else char for char in prefix.rstrip("/"))
    return f"~{escaped}(?:/|$)"


def route_name(route: Route) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", route.prefix.lower()).strip("-")
    return f"{route.app.value}-{slug}"


def kong_config(inputs: KongInputs, routes: tuple[Route, ...] = ROUTES) -> dict[str, Any]:
    """The declarative config for Kong 3.9 in DB-less mode."""
    public = [route for route in routes if route.public]
    unknown = set(inputs.retryable_prefixes) - {route.prefix for route in public}
    if unknown:
        raise ValueError(f"retryable_prefixes not in the public route table: {sorted(unknown)}")
    services: dict[str, dict[str, Any]] = {}
    for route in public:
        retries = inputs.retries if route.prefix in inputs.retryable_prefixes else 0
        name = _service_name(route, retries)
        service = services.setdefault(name, _service(name, route, retries, inputs))
        service["routes"].append(_route(route))
    return {
        "_format_version": "3.0",
        "_transform": True,
        "services": list(services.values()),
        "plugins": _global_plugins(inputs),
    }


def kong_env(*, tracing: bool) -> dict[str, str]:
    """Kong settings (the chart's `env:` keys, without the `KONG_` prefix) the config relies on."""
    env = {"database": "off", "router_flavor": "traditional_compatible"}
    if tracing:
        env |= {"tracing_instrumentations": "request,balancer", "tracing_sampling_rate": "1.0"}
    return env


def _service_name(route: Route, retries: int) -> str:
    name = route.app.value
    if route.timeout_seconds != 60:
        name += f"-{route.timeout_seconds:g}s"
    if retries:
        name += "-retry"
    return name


def _service(name: str, route: Route, retries: int, inputs: KongInputs) -> dict[str, Any]:
    timeout_ms = int(route.timeout_seconds * 1000)
    return {
        "name": name,
        "url": app_url(route.app, inputs),
        "connect_timeout": int(inputs.connect_timeout_seconds * 1000),
        "read_timeout": timeout_ms,
        "write_timeout": timeout_ms,
        "retries": retries,
        "tags": ["jan", f"app:{route.app.value}"],
        "routes": [],
    }


def _route(route: Route) -> dict[str, Any]:
    name = route_name(route)
    plugins: list[dict[str, Any]] = [
        {
            "name": "request-transformer",
            "config": {
                "remove": {"headers": [INTERNAL_TOKEN_HEADER, GATEWAY_HEADER, ROUTE_HEADER]},
                "add": {"headers": [f"{GATEWAY_HEADER}:kong", f"{ROUTE_HEADER}:{route.prefix}"]},
            },
        }
    ]
    if route.rate_limit_per_minute is not None:
        plugins.append(
            {
                "name": "rate-limiting",
                "config": {
                    "minute": route.rate_limit_per_minute,
                    "policy": "local",
                    "limit_by": "ip",
                    "fault_tolerant": True,
                },
            }
        )
    return {
        "name": name,
        "paths": [path_regex(route.prefix)],
        "strip_path": False,
        "protocols": ["http", "https"],
        "regex_priority": len(route.prefix),
        "response_buffering": not route.streaming,
        "tags": ["jan"],
        "plugins": plugins,
    }


def _global_plugins(inputs: KongInputs) -> list[dict[str, Any]]:
    plugins: list[dict[str, Any]] = [
        {
            "name": "correlation-id",
            "config": {"header_name": REQUEST_ID_HEADER, "generator": "uuid", "echo_downstream": True},
        },
        {
            "name": "prometheus",
            "config": {
                "status_code_metrics": True,
                "latency_metrics": True,
                "bandwidth_metrics": True,
                "upstream_health_metrics": True,
            },
        },
    ]
    if inputs.cors_origins:
        plugins.append(
            {
                "name": "cors",
                "config": {
                    "origins": list(inputs.cors_origins),
                    # The apps' policy too (apps.common.cors): one answer with or without Kong.
                    "methods": list(CORS.methods),
                    "headers": list(CORS.headers),
                    "exposed_headers": list(CORS.exposed_headers),
                    "credentials": CORS.credentials,
                    "max_age": CORS.max_age_seconds,
                },
            }
        )
    if inputs.otel_traces_endpoint:
        plugins.append(
            {
                "name": "opentelemetry",
                "config": {
                    "traces_endpoint": inputs.otel_traces_endpoint,
                    "resource_attributes": {"service.name": "kong", "service.namespace": "jan"},
                    "propagation": {
                        "extract": ["w3c"],
                        "inject": ["w3c"],
                        "default_format": "w3c",
                    },
                },
            }
        )
    return plugins
