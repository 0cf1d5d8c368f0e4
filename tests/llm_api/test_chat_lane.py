"""The chat route's lane (apps/llm_api/routes/chat.py): served ahead of FastAPI's router, same answers.

Every chat test in this directory goes through the lane; these pin what it must keep from the
declared route: other methods' 405, the route the instrumentation names, and its refusal to start
when the endpoint's parameters change under it.
"""

from __future__ import annotations

from typing import Any, get_args

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from apps.common.auth.principal import Principal, PrincipalDep
from apps.common.guard import GuardedRoute
from apps.llm_api.deps import ChatDep
from apps.llm_api.main import create_app
from apps.llm_api.routes.chat import PATH, ChatLane, chat_lane
from tests.harness.issuer import TestIssuer
from tests.harness.llm_api import FAKE_MODEL, LlmApi, llm_api_settings
from tests.harness.server import serve
from tests.harness.upstream import FakeUpstream

BODY = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "hi"}]}


def test_the_lane_is_matched_first_and_the_declared_route_stays() -> None:
    app = create_app(llm_api_settings("postgresql+asyncpg://unused@127.0.0.1/unused", TestIssuer()))
    lane = app.router.routes[0]
    assert isinstance(lane, ChatLane)
    assert PATH in app.openapi()["paths"] and "post" in app.openapi()["paths"][PATH]


def test_other_methods_fall_through_to_the_routes_405(llm_api: LlmApi) -> None:
    with llm_api.http() as http:
        response = http.get(PATH)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


def test_refusals_keep_their_envelopes(llm_api: LlmApi) -> None:
    with httpx.Client(base_url=llm_api.url, timeout=30) as anonymous:
        unauthenticated = anonymous.post(PATH, json=BODY)
    assert unauthenticated.status_code == 401 and unauthenticated.headers["www-authenticate"] == "Bearer"
    with llm_api.http() as http:
        bad_json = http.post(PATH, content=b"{not json", headers={"content-type": "application/json"})
        unknown = http.post(PATH, json={**BODY, "model": "nope"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_a_recorded_span_names_the_route(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream
) -> None:
    settings = llm_api_settings(
        database_url, issuer, default_provider_url=upstream_server.base_url, default_provider_name="fake"
    )
    app = create_app(settings)
    exporter = InMemorySpanExporter()
    app.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {issuer.mint('lane-user')}"}
        response = http.post(PATH, json=BODY, headers=headers)
        assert response.status_code == 200, response.text
    servers = [span for span in exporter.get_finished_spans() if span.kind == trace.SpanKind.SERVER]
    [span] = [span for span in servers if (span.attributes or {}).get("http.route") == PATH]
    assert span.name == f"POST {PATH}"


def test_dependency_overrides_are_honoured(
    database_url: str, issuer: TestIssuer, upstream_server: FakeUpstream
) -> None:
    # The lane reads the chat service from app.state; with an override set it leaves the request to
    # the declared route, which resolves the endpoint's dependencies through the overrides.
    settings = llm_api_settings(
        database_url, issuer, default_provider_url=upstream_server.base_url, default_provider_name="fake"
    )
    app = create_app(settings)
    seen: list[str] = []

    class Stub:
        async def respond(self, raw: bytes, principal: Principal) -> Response:
            seen.append(principal.user_id)
            return Response(b'{"stub": true}', media_type="application/json")

    chat_dependency = get_args(ChatDep)[1].dependency
    headers = {"Authorization": f"Bearer {issuer.mint('override-user')}"}
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        app.dependency_overrides[chat_dependency] = Stub
        overridden = http.post(PATH, json=BODY, headers=headers)
        anonymous = http.post(PATH, json=BODY)
        app.dependency_overrides.clear()
        served = http.post(PATH, json=BODY, headers=headers)
    assert overridden.status_code == 200 and overridden.json() == {"stub": True}
    assert len(seen) == 1 and seen[0]
    assert anonymous.status_code == 401  # the guard still runs first
    assert served.status_code == 200 and served.json()["object"] == "chat.completion"
    assert len(seen) == 1
    lane = chat_lane()
    scope = {"type": "http", "method": "POST", "path": PATH, "root_path": "", "app": app}
    assert lane.matches(scope)[0].name == "FULL"
    app.dependency_overrides[chat_dependency] = Stub
    assert lane.matches(scope)[0].name == "NONE"


def test_the_lane_refuses_an_endpoint_it_does_not_reproduce() -> None:
    router = APIRouter(route_class=GuardedRoute)

    @router.post(PATH)
    async def changed(request: Request, principal: PrincipalDep, chat: ChatDep, extra: int = 0) -> Response:
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="update _respond"):
        ChatLane(router.routes[0])  # type: ignore[arg-type]

    bare = APIRouter(route_class=GuardedRoute)

    @bare.post(PATH)
    async def undeclared(request: Request, principal: Any, chat: Any) -> Response:
        raise AssertionError("never called")

    with pytest.raises(RuntimeError, match="update _respond"):  # no dependencies at all: same refusal
        ChatLane(bare.routes[0])  # type: ignore[arg-type]


def test_the_lane_serves_only_post_on_its_path() -> None:
    lane = chat_lane()

    def scope(method: str, path: str) -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": ""}

    assert lane.matches(scope("POST", PATH))[0].name == "FULL"
    assert lane.matches(scope("GET", PATH))[0].name == "NONE"
    assert lane.matches(scope("POST", PATH + "/"))[0].name == "NONE"
    assert lane.matches({"type": "websocket", "path": PATH, "root_path": ""})[0].name == "NONE"


def test_the_lane_matches_under_a_root_path_and_leaves_other_methods_to_the_route() -> None:
    # Behind a proxy's prefix (uvicorn's `--root-path`, a Mount) the path the route sees is the one
    # under it, as for FastAPI's own routes; HEAD and OPTIONS get the declared route's 405.
    lane = chat_lane()
    prefixed = {"type": "http", "method": "POST", "path": f"/llm{PATH}", "root_path": "/llm"}
    assert lane.matches(prefixed)[0].name == "FULL"
    assert lane.matches({**prefixed, "path": PATH, "root_path": ""})[0].name == "FULL"
    assert lane.matches({**prefixed, "path": f"/llmx{PATH}"})[0].name == "NONE"
    for method in ("HEAD", "OPTIONS", "PUT"):
        assert lane.matches({**prefixed, "method": method})[0].name == "NONE"
