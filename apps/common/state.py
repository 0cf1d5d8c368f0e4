"""One typed way to reach what a lifespan put on `app.state`.

Every app builds its services in its lifespan and hangs them on `app.state`; routes reach them
through dependencies made here:

    ServiceDep = Annotated[ResponseService, Depends(state_dependency("responses", ResponseService))]

The dependency is `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
a thread hop on every request. `kind` types the value for mypy (`app.state` is untyped); it is not
checked at run time, so a Protocol is accepted. Code that holds a request (or the app) and no
dependency uses `app_state` the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection

T = TypeVar("T")


def app_state(connection: HTTPConnection, name: str, kind: type[T]) -> T:  # noqa: ARG001 - typing only
    """`app.state.<name>` of the app serving `connection`, as a `kind`."""
    return cast(T, getattr(connection.app.state, name))


def state_dependency(name: str, kind: type[T]) -> Callable[[HTTPConnection], Awaitable[T]]:
    """A FastAPI dependency (`async def`) returning `app.state.<name>` as a `kind`."""

    async def dependency(connection: HTTPConnection) -> T:
        return app_state(connection, name, kind)

    dependency.__name__ = dependency.__qualname__ = f"state_{name}"
    return dependency


def optional_state_dependency(
    name: str,
    kind: type[T],  # noqa: ARG001 - typing only
) -> Callable[[HTTPConnection], Awaitable[T | None]]:
    """The same for a value a lifespan may set to None (a feature not configured)."""

    async def dependency(connection: HTTPConnection) -> T | None:
        value: Any = getattr(connection.app.state, name, None)
        return cast(T | None, value)

    dependency.__name__ = dependency.__qualname__ = f"state_{name}"
    return dependency
