"""The kit's app shell: error envelope, request ids, body limit, health, auth dependency, telemetry."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from apps.common.auth import PrincipalDep
from apps.common.errors import APIError
from apps.common.logs import JsonFormatter
from apps.common.service import service_app
from apps.common.settings import ServiceSettings
from tests.harness.issuer import TestIssuer
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT, eventually


class Item(BaseModel):
    name: str
    count: int


def build(issuer: TestIssuer) -> FastAPI:
    app = service_app(
        ServiceSettings(service_name="kit-test", auth=issuer.auth_settings()),
        title="kit",
        max_body_bytes=1024,
    )

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> Item:
        return Item(name=str(item_id), count=item_id)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @app.get("/db-down")
    async def db_down() -> None:
        raise OperationalError("select 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/peer-down")
    async def peer_down() -> None:
        raise ConnectionRefusedError("connection refused")

    @app.get("/teapot")
    async def teapot() -> None:
        raise APIError(418, "short and stout", code="teapot")

    @app.get("/me")
    async def me(principal: PrincipalDep) -> dict[str, str]:
        return {"sub": principal.subject}

    flaky = {"down": False}

    async def check() -> None:
        if flaky["down"]:
            raise ConnectionError("database unreachable")

    app.state.readiness.add("database", check)
    app.state.flaky = flaky
    return app


@pytest.fixture(scope="module")
def kit(issuer: TestIssuer) -> Iterator[tuple[str, FastAPI]]:
    app = build(issuer)
    with serve(app) as server:
        yield server.url, app


@pytest.fixture(scope="module")
def client(kit: tuple[str, FastAPI]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kit[0], timeout=CLIENT_TIMEOUT) as kit_client:
        yield kit_client


def test_validation_error_is_400_in_the_openai_envelope(client: httpx.Client) -> None:
    response = client.post("/items", json={"name": "a", "count": "many"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "count" and error["type"] == "invalid_request_error"


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post("/items", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_unexpected_exception_is_a_500_envelope_without_internals(client: httpx.Client) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json()["error"]["type"] == "server_error"


def test_unreachable_dependencies_are_503_not_500(client: httpx.Client) -> None:
    database = client.get("/db-down")
    assert database.status_code == 503 and database.headers["retry-after"] == "5"
    assert database.json()["error"]["code"] == "database_unavailable"
    peer = client.get("/peer-down")
    assert peer.status_code == 503 and peer.json()["error"]["code"] == "dependency_unavailable"


def test_api_error_keeps_its_status_and_code(client: httpx.Client) -> None:
    response = client.get("/teapot")
    assert response.status_code == 418 and response.json()["error"]["code"] == "teapot"


def test_unknown_path_is_404_envelope(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404 and "error" in response.json()


def test_oversized_body_is_413(client: httpx.Client) -> None:
    response = client.post("/items", json={"name": "x" * 2000, "count": 1})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'", "count": 1}'

    response = client.post("/items", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_request_id_is_echoed_or_generated(client: httpx.Client) -> None:
    echoed = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32


def test_access_log_is_json_with_request_id(client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jan.access"):
        client.get("/healthz", headers={"X-Request-Id": "log-me"})
        # The access line is written after the response is sent, on the server's thread.
        eventually(lambda: any(r.name == "jan.access" for r in caplog.records))
    record = next(r for r in caplog.records if r.name == "jan.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200 and line["path"] == "/healthz" and line["service"] == "kit-test"


def test_readiness_reports_each_check(kit: tuple[str, FastAPI], client: httpx.Client) -> None:
    app = kit[1]
    assert client.get("/readyz").status_code == 200
    app.state.flaky["down"] = True
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"]["status"] == "error"
        assert client.get("/healthz").status_code == 200
    finally:
        app.state.flaky["down"] = False
    assert client.get("/readyz").status_code == 200


def test_principal_dependency(client: httpx.Client, issuer: TestIssuer) -> None:
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"Authorization": "Bearer junk"}).status_code == 401
    ok = client.get("/me", headers={"Authorization": f"Bearer {issuer.mint('carol')}"})
    assert ok.status_code == 200 and ok.json() == {"sub": "carol"}
    expired = client.get("/me", headers={"Authorization": f"Bearer {issuer.mint_expired()}"})
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_the_first_credential_header_of_each_name_counts(client: httpx.Client, issuer: TestIssuer) -> None:
    good, junk = f"Bearer {issuer.mint('dave')}", "Bearer junk"
    assert client.get("/me", headers=[("Authorization", good), ("Authorization", junk)]).status_code == 200
    assert client.get("/me", headers=[("Authorization", junk), ("Authorization", good)]).status_code == 401
    # Without a bearer token the X-API-Key header carries the credential (here a token too).
    only_key = client.get("/me", headers={"Authorization": "Basic x", "X-API-Key": issuer.mint("erin")})
    assert only_key.status_code == 200 and only_key.json() == {"sub": "erin"}


def test_requests_are_traced(kit: tuple[str, FastAPI], client: httpx.Client) -> None:
    app = kit[1]
    exporter = InMemorySpanExporter()
    app.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    client.post("/items", json={"name": "a", "count": 1})
    # The server span ends after the response is sent, on the server's thread.
    eventually(
        lambda: any(
            span.attributes and span.attributes.get("http.route") == "/items"
            for span in exporter.get_finished_spans()
        )
    )
    spans = exporter.get_finished_spans()
    assert all(s.resource.attributes["service.name"] == "kit-test" for s in spans)


def test_span_names_stay_the_route_when_remembered(kit: tuple[str, FastAPI], client: httpx.Client) -> None:
    """Static routes' span names are remembered (apps.common.telemetry.RouteNames); same names as before."""
    exporter = InMemorySpanExporter()
    kit[1].state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    for number in (1, 2):
        assert client.post("/items", json={"name": "a", "count": number}).status_code == 200
        assert client.get(f"/items/{number}").status_code == 200

    def server_spans() -> list[tuple[str, object]]:
        return sorted(
            (span.name, (span.attributes or {}).get("http.route"))
            for span in exporter.get_finished_spans()
            if span.kind.name == "SERVER"
        )

    eventually(lambda: len(server_spans()) == 4)
    assert server_spans() == [
        ("GET /items/{item_id}", "/items/{item_id}"),
        ("GET /items/{item_id}", "/items/{item_id}"),
        ("POST /items", "/items"),
        ("POST /items", "/items"),
    ]
