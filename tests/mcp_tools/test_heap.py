"""mcp-tools freezes its startup heap once its tools are up, as the other apps do: a full
collection over what the MCP SDK, SQLAlchemy and the search clients leave after startup would land
inside whichever tool call allocates at that moment (apps/common/heap.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import apps.mcp_tools.main
from tests.harness.server import serve


def test_the_startup_heap_is_frozen_before_serving(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(apps.mcp_tools.main, "freeze_startup_heap", lambda: calls.append("frozen"))
    app = apps.mcp_tools.main.create_app(settings_factory())
    assert calls == []
    with serve(app) as server:
        assert calls == ["frozen"]  # during startup, before the first request is served
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert calls == ["frozen"]
