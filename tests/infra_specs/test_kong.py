"""Kong's declarative config and the route table agree."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from apps.gateway.routes import ROUTES, AppName, match
from infra.specs.kong import KongInputs, kong_config, kong_env, kong_route_target, route_name

PUBLIC = tuple(route for route in ROUTES if route.public)
INPUTS = KongInputs(
    namespace="jan",
    release_names={AppName.MEDIA_API: "media"},
    cors_origins=("https://chat.example.com", "http://localhost:3000"),
    otel_traces_endpoint="http://otel-collector.observability.svc.cluster.local:4318/v1/traces",
)


def _sample_paths() -> list[str]:
    paths = ["/", "/v1", "/v1/", "/healthz", "/internal/api-keys/validate", "/.well-known/jwks.json"]
    for route in ROUTES:
        base = route.prefix.rstrip("/")
        paths += [base, base + "/", base + "/abc", base + "/abc/def", base + "x", base + "-x", base + "x/y"]
    return paths


def _routes(config: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {route["name"]: (service, route) for service in config["services"] for route in service["routes"]}


def test_kong_sends_every_path_where_the_route_table_does() -> None:
    config = kong_config(INPUTS)
    for path in _sample_paths():
        expected = match(path, PUBLIC)
        assert kong_route_target(config, path) == (expected.app if expected else None), path


def test_segment_and_longest_prefix_cases() -> None:
    config = kong_config(INPUTS)
    assert kong_route_target(config, "/v1/mediax") is None
    assert kong_route_target(config, "/v1/media") is AppName.MEDIA_API
    assert kong_route_target(config, "/v1/media/jan_1/content") is AppName.MEDIA_API
    assert kong_route_target(config, "/v1/responses/resp_1/cancel") is AppName.RESPONSE_API
    assert kong_route_target(config, "/v1/media/jan_1/presign") is AppName.MEDIA_API
    assert kong_route_target(config, "/v1/projects") is AppName.LLM_API
    assert kong_route_target(config, "/v1/projects/proj_1") is AppName.LLM_API
    assert kong_route_target(config, "/v1/models/local/smollm2-135m-instruct") is AppName.LLM_API
    routes = _routes(config)
    guest = routes[route_name(match("/v1/auth/guest-login") or PUBLIC[0])][1]
    auth = routes["llm-api-v1-auth"][1]
    assert guest["regex_priority"] > auth["regex_priority"]
    assert kong_route_target(config, "/v1/auth/guest-login") is AppName.LLM_API


def test_internal_routes_are_not_exposed() -> None:
    config = kong_config(INPUTS)
    assert kong_route_target(config, "/internal/api-keys/validate") is None
    assert kong_route_target(config, "/.well-known/jwks.json") is None
    assert len(_routes(config)) == len(PUBLIC)


def test_every_public_route_is_present_with_its_settings() -> None:
    config = kong_config(INPUTS)
    assert config["_format_version"] == "3.0"
    routes = _routes(config)
    for table_route in PUBLIC:
        service, route = routes[route_name(table_route)]
        assert route["strip_path"] is False
        assert service["read_timeout"] == service["write_timeout"] == int(table_route.timeout_seconds * 1000)
        assert service["connect_timeout"] == 5000
        assert route["response_buffering"] is (not table_route.streaming)
        limits = [plugin["config"] for plugin in route["plugins"] if plugin["name"] == "rate-limiting"]
        assert limits == [
            {
                "minute": table_route.rate_limit_per_minute,
                "policy": "local",
                "limit_by": "ip",
                "fault_tolerant": True,
            }
        ]
        [transformer] = [
            plugin["config"] for plugin in route["plugins"] if plugin["name"] == "request-transformer"
        ]
        assert "X-Internal-Token" in transformer["remove"]["headers"]
        assert f"X-Jan-Route:{table_route.prefix}" in transformer["add"]["headers"]


def test_services_point_at_the_app_releases_with_safe_retries() -> None:
    config = kong_config(INPUTS)
    by_name = {service["name"]: service for service in config["services"]}
    assert by_name["media-api-120s"]["url"] == "http://media.jan.svc.cluster.local:8285"
    assert by_name["llm-api-600s"]["url"] == "http://llm-api.jan.svc.cluster.local:8080"
    routes = _routes(config)
    assert routes["llm-api-v1-models"][0]["retries"] == 2
    for name in ("llm-api-v1-chat-completions", "llm-api-v1-auth-guest-login", "response-api-v1-responses"):
        assert routes[name][0]["retries"] == 0
    assert len(by_name) == len(config["services"])


def test_global_plugins() -> None:
    plugins = {plugin["name"]: plugin["config"] for plugin in kong_config(INPUTS)["plugins"]}
    assert plugins["correlation-id"] == {
        "header_name": "X-Request-Id",
        "generator": "uuid",
        "echo_downstream": True,
    }
    assert plugins["cors"]["origins"] == ["https://chat.example.com", "http://localhost:3000"]
    assert "X-Request-Id" in plugins["cors"]["exposed_headers"]
    assert plugins["opentelemetry"]["traces_endpoint"] == INPUTS.otel_traces_endpoint
    assert plugins["prometheus"]["status_code_metrics"] is True
    bare = {plugin["name"] for plugin in kong_config(KongInputs(namespace="jan"))["plugins"]}
    assert bare == {"correlation-id", "prometheus"}
    assert kong_env(tracing=True)["tracing_sampling_rate"] == "1.0"
    assert "tracing_instrumentations" not in kong_env(tracing=False)


def test_config_round_trips_as_yaml() -> None:
    config = kong_config(INPUTS)
    assert yaml.safe_load(yaml.safe_dump(config, sort_keys=False)) == config


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValidationError):
        KongInputs(namespace="jan", cors_origins=("*",))
    with pytest.raises(ValidationError):
        KongInputs(namespace="jan", cors_origins=("https://example.com/app",))
    with pytest.raises(ValueError, match="retryable_prefixes"):
        kong_config(KongInputs(namespace="jan", retryable_prefixes=("/internal",)))


def test_ambiguous_kong_routes_are_detected() -> None:
    config = kong_config(INPUTS)
    service = config["services"][0]
    service["routes"].append({**service["routes"][0], "name": "copy"})
    with pytest.raises(ValueError, match="ambiguous"):
        kong_route_target(config, service["routes"][0]["paths"][0][1:].split("(")[0])
