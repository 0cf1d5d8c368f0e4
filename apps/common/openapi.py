"""The OpenAPI document of every app, made to describe what the app really answers.

FastAPI documents 200 and 422 for every operation. Our apps never answer 422 (validation errors are
400 in the OpenAI envelope) and answer many other statuses, so `install_openapi(app)` rewrites each
operation's responses from what the route can actually produce:

- 400 for any operation that takes parameters or a body (validation, NUL characters, bad values);
- 401 (with `WWW-Authenticate`) when it depends on the caller's principal, 403 when on the admin role;
- 404 when its path has parameters (an id that does not exist, or is someone else's);
- 413 when it takes a body (the body-size limit);
- 503 (with `Retry-After`) everywhere: a database or peer outage; 500 is the boundary for bugs;
- whatever the route or its router adds with `responses=error_responses(...)` (409, 415, 502, …).

Every error status carries the envelope schema (`ErrorResponse`). A 405 names every method the path
has in its `Allow` header (Starlette's own names only the first route's). `merge_documents` makes
the gateway's one document from the four apps'.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from apps.common.auth.principal import get_principal, require_admin
from apps.common.errors import envelope, error_type_for


class ErrorObject(BaseModel):
    model_config = ConfigDict(title="ErrorObject")

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error envelope every error is answered with."""

    error: ErrorObject


DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: a field is missing, malformed or out of range (`param` names it).",
    401: "Missing, invalid, expired or revoked credentials.",
    403: "The credentials are valid but not allowed to do this.",
    404: "No such object (or it belongs to someone else).",
    405: "The path exists but not with this method; `Allow` lists the methods it has.",
    409: "The object is not in a state that allows this (yet).",
    410: "The object existed but has expired.",
    413: "The request body or the media is larger than allowed.",
    415: "The content type or media type is not accepted.",
    429: "Too many requests; retry after the time in `Retry-After`.",
    500: "An unexpected error; the request id in `X-Request-Id` finds it in the logs.",
    501: "The server is not configured for this (e.g. guest sessions without an identity provider).",
    502: "A model server or other upstream answered with an error.",
    503: "A dependency (database, object store, peer service) is unavailable; retry after `Retry-After`.",
    504: "An upstream did not answer in time.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    405: {"Allow": {"schema": {"type": "string"}, "description": "The methods this path has."}},
    429: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait."}},
}

_REF = "#/components/schemas/ErrorResponse"
_BODY_METHODS = {"post", "put", "patch"}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A JWT or an `sk_…` API key."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: these error statuses, with the envelope schema."""
    return {status: {"model": ErrorResponse, "description": DESCRIPTIONS[status]} for status in statuses}


# A pydantic model or a TypedDict (a body typed for free at run time: `apps/*/types.py`), generic or not.
ResponseModels = dict[tuple[str, str], type[Any]]
ErrorStatuses = dict[tuple[str, str], tuple[int, ...]]


def document_models(app: FastAPI, models: ResponseModels, errors: ErrorStatuses | None = None) -> None:
    """Document the success body of routes that build their JSON themselves, and error statuses
    a route answers beyond the ones derived from its shape (both keyed by `(METHOD, path)`).

    The route keeps returning what it returns; only its document changes, so a route's signature
    stays as it is. A schema that does not refuse unknown fields (no `additionalProperties: false`)
    lets the bodies carry more than it names, as OpenAI's objects do. A generic type given its
    arguments (`Page[Conversation]`) is named after them (`ConversationPage`); a name that another schema
    of the document has for another shape is refused.
    """
    app.state.openapi_models = {**getattr(app.state, "openapi_models", {}), **models}
    app.state.openapi_errors = {**getattr(app.state, "openapi_errors", {}), **(errors or {})}
    app.openapi_schema = None


def install_openapi(app: FastAPI, *, extra_paths: dict[str, Any] | None = None) -> None:
    """Make `app.openapi()` document the statuses and errors each route really answers.

    `extra_paths` describes routes FastAPI cannot (mounted ASGI apps such as `/v1/mcp`).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            document = complete_document(document, app.routes, extra_paths or {})
            models = getattr(app.state, "openapi_models", {})
            errors = getattr(app.state, "openapi_errors", {})
            app.openapi_schema = _add_models(document, models, errors)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(405, _method_not_allowed)


def complete_document(
    document: dict[str, Any], routes: Iterable[Any], extra_paths: dict[str, Any]
) -> dict[str, Any]:
    document.setdefault("paths", {}).update(copy.deepcopy(extra_paths))
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_error_schemas())
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    by_operation = {
        (route.path_format, method.lower()): route.dependant
        for route in _api_routes(routes)
        for method in route.methods or ()
    }
    for path, item in document["paths"].items():
        if path in extra_paths:  # described by hand, statuses included
            continue
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch", "options", "head"):
                continue
            statuses = _statuses(path, method, operation, by_operation.get((path, method)))
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(statuses):
                _document_error(responses, status)
            if 401 in statuses:
                operation.setdefault("security", [{"bearer": []}, {"apiKey": []}])
    return document


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] | None = document["paths"].get(path, {}).get(method.lower())
    if operation is None:
        raise ValueError(f"{method} {path} is not an operation of this app")
    return operation


def _add_models(document: dict[str, Any], models: ResponseModels, errors: ErrorStatuses) -> dict[str, Any]:
    for (method, path), statuses in errors.items():
        operation = _operation(document, method, path)
        for status in statuses:
            _document_error(operation["responses"], status)
    schemas = document["components"]["schemas"]
    for (method, path), model in models.items():
        operation = _operation(document, method, path)
        name = _schema_name(model)
        schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
        if get_origin(model) is not None:
            schema["title"] = name  # not the generic's own name
        for found, found_schema in [*schema.pop("$defs", {}).items(), (name, schema)]:
            _add_schema(schemas, found, found_schema)
        success = next(code for code in sorted(operation["responses"]) if code.startswith("2"))
        content = operation["responses"][success].setdefault("content", {})
        content.setdefault("application/json", {})["schema"] = {"$ref": f"#/components/schemas/{name}"}
    return document


def _schema_name(model: Any) -> str:
    """A type's name in the document; a generic type given its arguments is named after them
    (`Page[Conversation]` is `ConversationPage`)."""
    origin = get_origin(model)
    if origin is None:
        return str(model.__name__)
    return "".join(_schema_name(argument) for argument in get_args(model)) + _schema_name(origin)


def _add_schema(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Add a schema, refusing a name already used for another shape (a second type of that name
    would replace the first one everywhere it is referenced).

    Shapes, not whole schemas, are compared: FastAPI and pydantic's `TypeAdapter` render the same
    model's constraints and defaults differently. The first rendering of a name is kept.
    """
    existing = schemas.setdefault(name, schema)
    if _shape(existing) != _shape(schema):
        raise ValueError(f"two different schemas are named {name!r} in the document: name one apart")


def _shape(schema: dict[str, Any]) -> tuple[Any, ...]:
    return (
        schema.get("type"),
        sorted(schema.get("properties", {})),
        sorted(schema.get("required", [])),
        schema.get("enum"),
    )


def _statuses(path: str, method: str, operation: dict[str, Any], dependant: Dependant | None) -> set[int]:
    statuses = {503}
    declared = {int(code) for code in operation.get("responses", {}) if str(code).isdigit()}
    statuses |= {code for code in declared if code >= 400 and code != 422}
    if operation.get("parameters") or operation.get("requestBody") or method in _BODY_METHODS:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    if operation.get("requestBody") or method in _BODY_METHODS:
        statuses.add(413)
    if dependant is not None:
        calls = set(_dependency_calls(dependant))
        if get_principal in calls:
            # Authenticated calls are admitted per user (apps/common/admission.py): 429 over the share.
            statuses |= {401, 429}
        if require_admin in calls:
            statuses.add(403)
    return statuses


def _document_error(responses: dict[str, Any], status: int) -> None:
    entry = responses.setdefault(str(status), {})
    entry.setdefault("description", DESCRIPTIONS.get(status, "Error"))
    entry["content"] = {"application/json": {"schema": {"$ref": _REF}}}
    if status in _HEADERS:
        entry["headers"] = {**_HEADERS[status], **entry.get("headers", {})}


def _error_schemas() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {**definitions, "ErrorResponse": schema}


def _api_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every API route with the prefix and dependencies of the routers it was included through."""
    for context in iter_route_contexts(list(routes)):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def _dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _dependency_calls(dependency)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with every method the path has: FastAPI keeps one route per method, Starlette names one."""
    methods: set[str] = set()
    path = request.scope.get("path", "")
    for context in iter_route_contexts(request.app.router.routes):
        regex = getattr(context, "path_regex", None)
        if context.methods and regex is not None and regex.match(path):
            methods |= set(context.methods)
    if "GET" in methods:
        methods.add("HEAD")
    allow = ", ".join(sorted(methods))
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Method Not Allowed"
    body = envelope(str(detail), type=error_type_for(405), code="method_not_allowed")
    return JSONResponse(body, status_code=405, headers={"Allow": allow})


_REF_PATTERN = re.compile(r"^#/components/schemas/(.+)$")


def merge_documents(documents: dict[str, dict[str, Any]], *, title: str, version: str) -> dict[str, Any]:
    """One document from several apps' (keyed by app name). Paths never overlap (the route table
    gives each prefix to one app); a schema name two apps use for different schemas is prefixed
    with the app's name in the second app's document."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": SECURITY_SCHEMES},
        "tags": [],
    }
    schemas: dict[str, Any] = merged["components"]["schemas"]
    for app_name, source in documents.items():
        document = copy.deepcopy(source)
        own = document.get("components", {}).get("schemas", {})
        renames = {
            name: f"{_camel(app_name)}{name}"
            for name, schema in own.items()
            if name in schemas and schemas[name] != schema
        }
        if renames:
            document = _rename_refs(document, renames)
            own = {renames.get(name, name): schema for name, schema in own.items()}
        schemas.update(own)
        for path, item in document.get("paths", {}).items():
            if path in merged["paths"]:
                raise ValueError(f"{path} is documented by two apps")
            merged["paths"][path] = item
        seen = {tag["name"] for tag in merged["tags"]}
        merged["tags"].extend(tag for tag in document.get("tags", []) if tag["name"] not in seen)
    if not merged["tags"]:
        del merged["tags"]
    return merged


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name))


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        renamed: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and (found := _REF_PATTERN.match(value)):
                renamed[key] = f"#/components/schemas/{renames.get(found.group(1), found.group(1))}"
            else:
                renamed[key] = _rename_refs(value, renames)
        return renamed
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node
