"""Every route dependency of the four apps is `async def`: none costs a thread hop per request."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from apps.llm_api.main import create_app as llm_api
from apps.llm_api.settings import LlmApiSettings
from apps.mcp_tools.main import create_app as mcp_tools
from apps.mcp_tools.settings import McpToolsSettings
from apps.media_api.main import create_app as media_api
from apps.media_api.settings import MediaApiSettings
from apps.response_api.main import create_app as response_api
from apps.response_api.settings import ResponseApiSettings

APPS: dict[str, Callable[[], FastAPI]] = {
    "llm-api": lambda: llm_api(LlmApiSettings()),
    "response-api": lambda: response_api(ResponseApiSettings()),
    "media-api": lambda: media_api(MediaApiSettings()),
    "mcp-tools": lambda: mcp_tools(McpToolsSettings()),
}


def dependencies(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependencies(sub)


@pytest.mark.parametrize("name", sorted(APPS))
def test_route_dependencies_run_on_the_event_loop(name: str) -> None:
    app = APPS[name]()
    calls = {
        call
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for call in dependencies(route.dependant)
        if call is not None
    }
    assert calls or name == "mcp-tools", "the app's routes have dependencies"  # mcp-tools: MCP, health
    threaded = sorted(call.__qualname__ for call in calls if not inspect.iscoroutinefunction(call))
    assert threaded == []
