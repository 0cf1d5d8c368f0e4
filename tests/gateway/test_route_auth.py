"""Every route the table marks `auth=True` refuses a request without credentials, through the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.gateway.asgi import LocalGateway
from apps.gateway.embedded import free_port
from apps.gateway.local_apps import LocalEnvironment, build_apps
from apps.gateway.routes import ROUTES, Route
from tests.harness.server import serve

# One real endpoint under each protected prefix (method, path).
SAMPLES: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("POST", "/v1/chat/completions"),
    "/v1/models": ("GET", "/v1/models"),
    "/v1/conversations": ("GET", "/v1/conversations/conv_x"),
    "/v1/projects": ("GET", "/v1/projects"),
    "/v1/auth": ("GET", "/v1/auth/me"),
    "/v1/admin": ("GET", "/v1/admin/providers"),
    "/v1/responses": ("POST", "/v1/responses"),
    "/v1/media": ("GET", "/v1/media"),
    "/v1/mcp": ("POST", "/v1/mcp"),
}


@pytest.fixture(scope="module")
def gateway_url(
    database_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    env = LocalEnvironment(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=Path(tmp_path_factory.mktemp("route-auth")),
        database_url=database_url,
        s3_endpoint_url=s3_endpoint,
        model_url=None,
        model_api_key=None,
        internal_token="route-auth-test",
    )
    with serve(LocalGateway(build_apps(env)), port=port) as server:
        yield server.url


PROTECTED = [route for route in ROUTES if route.auth]


def test_every_protected_route_has_a_sample() -> None:
    assert {route.prefix for route in PROTECTED} == set(SAMPLES)


@pytest.mark.parametrize("route", PROTECTED, ids=lambda route: route.prefix)
def test_protected_route_refuses_anonymous_requests(gateway_url: str, route: Route) -> None:
    method, path = SAMPLES[route.prefix]
    response = httpx.request(method, f"{gateway_url}{path}", json={}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
