"""The OpenAPI documents describe what the apps answer (issue 11 item 8).

Every operation documents its error statuses with the OpenAI envelope (and never the 422 the apps
do not answer), JSON success bodies have a schema, a 405 names every method of its path, `/v1/mcp`
is described, and the local gateway serves one merged document and Swagger UI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from typing_extensions import TypedDict

from apps.common.openapi import document_models, install_openapi
from apps.gateway.asgi import LocalGateway
from apps.gateway.local_apps import LocalEnvironment, build_apps
from apps.gateway.routes import AppName

ENVELOPE = {"$ref": "#/components/schemas/ErrorResponse"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> LocalGateway:
    # Documents and routing need no running dependencies: nothing here is ever connected to.
    env = LocalEnvironment(
        base_url="http://127.0.0.1:9",
        data_dir=Path(tmp_path_factory.mktemp("docs")),
        database_url="postgresql://nobody@127.0.0.1:9/none",
        s3_endpoint_url="http://127.0.0.1:9",
        model_url=None,
        model_api_key=None,
        internal_token="t",
    )
    return LocalGateway(build_apps(env))


@pytest.fixture
async def client(gateway: LocalGateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        yield http


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_the_gateway_serves_one_document_for_all_four_apps(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = set(document["paths"])
    for expected in ("/v1/chat/completions", "/v1/responses", "/v1/media", "/v1/mcp", "/v1/conversations"):
        assert expected in paths
    assert not {p for p in paths if not p.startswith("/v1/")}  # health, internal and JWKS stay out
    assert "ErrorResponse" in document["components"]["schemas"]

    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text


async def test_every_operation_documents_its_errors_with_the_envelope(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for method, path, operation in operations(document):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "422" not in responses, where
        assert "503" in responses, where
        errors = {code: r for code, r in responses.items() if code[0] in "45"}
        if path != "/v1/mcp":  # the MCP transport's own errors are JSON-RPC errors, documented by hand
            for code, entry in errors.items():
                assert entry["content"]["application/json"]["schema"] == ENVELOPE, (where, code)
        if operation.get("security"):
            assert "401" in responses, where
        if "{" in path:
            assert "404" in responses, where
        if method in ("post", "patch") and path != "/v1/mcp":
            assert {"400", "413"} <= set(responses), where


async def test_json_success_bodies_have_a_schema(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for method, path, operation in operations(document):
        for code, entry in operation["responses"].items():
            schema = entry.get("content", {}).get("application/json", {}).get("schema")
            if code.startswith("2") and schema is not None:
                assert schema not in ({}, {"type": "object", "additionalProperties": True}), (method, path)
                assert schema.get("title") != "Response", (method, path)


def test_each_apps_v1_json_success_bodies_have_a_real_schema(gateway: LocalGateway) -> None:
    """Every app's own document (not only the merged one): each 2xx answer of a `/v1` route is JSON
    with a schema naming its fields, or a declared other media type (SSE, bytes), or no body."""
    empty: tuple[dict[str, Any], ...] = (
        {},
        {"type": "object"},
        {"type": "object", "additionalProperties": True},
    )
    for name, app in gateway.apps.items():
        document = app.openapi()
        schemas = document["components"]["schemas"]
        for method, path, operation in operations(document):
            if not path.startswith("/v1/"):
                continue
            for code, entry in operation["responses"].items():
                if not code.startswith("2"):
                    continue
                where = (name, method, path, code)
                content = entry.get("content", {})
                if "application/json" not in content:
                    assert code == "202" or set(content) - {"application/json"}, where
                    continue
                schema = content["application/json"].get("schema")
                assert schema not in (None, *empty), where
                if "$ref" in schema:
                    target = schemas[schema["$ref"].rsplit("/", 1)[1]]
                    assert target not in empty and target.get("title") != "Response", where


async def test_the_authenticated_operations_say_how_to_authenticate(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    secured = {(m, p) for m, p, op in operations(document) if op.get("security")}
    assert ("post", "/v1/media") in secured and ("post", "/v1/chat/completions") in secured
    assert ("post", "/v1/auth/guest-login") not in secured


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/media/jan_1", {"GET", "HEAD", "DELETE"}),
        ("PATCH", "/v1/conversations/conv_x", {"GET", "HEAD", "POST", "DELETE"}),
        ("PUT", "/v1/responses/resp_x", {"GET", "HEAD", "DELETE"}),
        ("GET", "/v1/mcp", {"POST"}),
    ],
)
async def test_a_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_list_page_is_documented_with_its_item_type(gateway: LocalGateway) -> None:
    """`types.Page` is generic: each page is its own schema, named after what it lists."""
    document = gateway.apps[AppName.LLM_API].openapi()
    schemas = document["components"]["schemas"]
    for path, item_type in [
        ("/v1/conversations", "Conversation"),
        ("/v1/conversations/{conversation_id}/items", "ConversationItem"),
        ("/v1/projects", "Project"),
    ]:
        ok = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{item_type}Page"}, path
        page = schemas[f"{item_type}Page"]
        assert page["properties"]["data"]["items"] == {"$ref": f"#/components/schemas/{item_type}"}
        assert set(page["required"]) == {"object", "data", "first_id", "last_id", "has_more"}


class Thing(BaseModel):
    a: int
    b: str = ""


class ThingBody(TypedDict):  # what a route answers: one field of the request's model
    a: int


def _documented(answer: type[Any]) -> FastAPI:
    app = FastAPI()

    @app.post("/things", response_model=None)
    async def create(body: Thing) -> dict[str, Any]:
        return {"a": body.a}

    install_openapi(app)
    document_models(app, {("POST", "/things"): answer})
    return app


def test_a_documented_type_may_not_take_the_name_of_another_schema() -> None:
    """Two types of one name would be one schema in the document, the second replacing the first."""

    class Thing(TypedDict):  # the answer's type, named as the request's model
        a: int

    with pytest.raises(ValueError, match="'Thing'"):
        _documented(Thing).openapi()
    document = _documented(ThingBody).openapi()
    assert set(document["components"]["schemas"]["Thing"]["properties"]) == {"a", "b"}
    assert document["components"]["schemas"]["ThingBody"]["required"] == ["a"]


def test_the_requests_own_model_documented_as_the_answer_is_one_schema() -> None:
    schemas = _documented(Thing).openapi()["components"]["schemas"]
    assert set(schemas["Thing"]["properties"]) == {"a", "b"}
