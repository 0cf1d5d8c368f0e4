"""The OpenAI error envelope and the exception handlers every app installs.

Every error leaves the service as `{"error": {"message", "type", "param", "code"}}`. Validation
failures are 400 (`invalid_request_error`), as OpenAI answers them, with `param` naming the first
offending field. A database or other dependency that cannot be reached (SQLAlchemy operational or
interface errors, OS-level connection errors, timeouts) is a 503 with `Retry-After`.

No database error is a 500: a value the database refuses (`DataError`: text it cannot store, a number
out of range) is the caller's 400; a constraint violation (`IntegrityError`) is a 409; any other
driver error is reported like an outage (503), since it says the database and the service disagree,
which a retry after a fix or a failover may cure. Strings Postgres cannot store are normally refused
earlier, naming the field (see `apps.common.guard`); these mappings are the backstop.

Unexpected exceptions are caught by `ExceptionBoundary`, a middleware, not by an exception handler:
Starlette hands `Exception` handlers to its outermost middleware, which answers and then re-raises,
and the server then drops the client's keep-alive connection. The boundary answers the 500 envelope,
logs the traceback with the request id, and lets the connection live.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class APIError(Exception):
    """An error with an HTTP status that is reported to the client in the OpenAI envelope."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type or error_type_for(status_code)
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return envelope(self.message, type=self.type, param=self.param, code=self.code)


def error_type_for(status_code: int) -> str:
    if status_code in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status_code]
    return "server_error" if status_code >= 500 else "invalid_request_error"


def envelope(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def not_found(what: str, ident: str) -> APIError:
    return APIError(404, f"{what} '{ident}' not found", code="not_found")


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    body = envelope(message, type=error_type_for(exc.status_code), code=getattr(exc, "code", None))
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        message = "We could not parse the JSON body of your request."
        return JSONResponse(envelope(message, code="invalid_json"), status_code=400)
    param = _validation_param(loc)
    detail = first.get("msg", "invalid request")
    message = f"Invalid value for '{param}': {detail}" if param else f"Invalid request: {detail}"
    return JSONResponse(envelope(message, param=param, code="invalid_value"), status_code=400)


def _unavailable(what: str, code: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        # A lost or refused dependency is an outage, not a bug: 503 tells clients to retry.
        log.warning("%s unavailable on %s %s: %r", what, request.method, request.url.path, exc)
        body = envelope(f"{what} is unavailable; try again shortly.", type="service_unavailable", code=code)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    return handler


def _sqlstate(exc: Exception) -> str:
    """The Postgres SQLSTATE behind a driver error (SQLAlchemy keeps asyncpg's error as `orig`)."""
    for candidate in (
        exc,
        getattr(exc, "orig", None),
        getattr(getattr(exc, "orig", None), "__cause__", None),
    ):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    state = _sqlstate(exc)
    if isinstance(exc, DataError) or state.startswith("22"):  # data exception: the value is at fault
        log.warning("database refused a value on %s %s: %r", request.method, request.url.path, exc)
        body = envelope("The request carries a value that cannot be stored.", code="invalid_value")
        return JSONResponse(body, status_code=400)
    if isinstance(exc, IntegrityError) or state.startswith("23"):  # constraint violation
        log.warning("constraint violation on %s %s: %r", request.method, request.url.path, exc)
        message = "The request conflicts with the current state of the resource."
        return JSONResponse(envelope(message, type="conflict_error", code="conflict"), status_code=409)
    return await _database_unavailable(request, exc)


async def _unencodable(request: Request, exc: Exception) -> JSONResponse:
    # Text with an unpaired surrogate fails as it is encoded for the database (or any other peer).
    log.warning("unencodable text on %s %s: %r", request.method, request.url.path, exc)
    body = envelope("The request carries text that is not valid Unicode.", code="invalid_value")
    return JSONResponse(body, status_code=400)


_SERVER_ERROR = envelope("The server had an error while processing your request.", type="server_error")


class ExceptionBoundary:
    """Turns an exception that escaped every handler into a 500 envelope, keeping the connection.

    When the response has already started (a stream broke), nothing can be said any more: the
    exception goes on to the server, which closes the connection so the client sees the truncation.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
            response = JSONResponse(_SERVER_ERROR, status_code=500)
            await response(scope, receive, send)


_database_unavailable = _unavailable("The service's database", "database_unavailable")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    dependency = _unavailable("A service this request depends on", "dependency_unavailable")
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(asyncpg.PostgresError, _database_error)
    app.add_exception_handler(asyncpg.InterfaceError, _database_unavailable)
    app.add_exception_handler(UnicodeError, _unencodable)
    # asyncpg reports a refused or missing socket as a bare OSError (not wrapped by SQLAlchemy).
    app.add_exception_handler(OSError, dependency)  # includes ConnectionError and TimeoutError
    # Anything else is caught by `ExceptionBoundary` (installed by `service_app`).
