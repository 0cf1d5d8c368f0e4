"""llm-api freezes its startup heap once its services are up, as response-api and media-api do.

A full garbage collection over the ~160k objects a process holds after startup costs 100+ ms of CPU,
landing inside whichever request allocates at that moment (apps/common/heap.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

import apps.llm_api.main
from tests.harness.llm_api import LlmApi


def test_the_startup_heap_is_frozen_before_serving(
    wired_llm_api: Callable[..., AbstractContextManager[LlmApi]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(apps.llm_api.main, "freeze_startup_heap", lambda: calls.append("frozen"))
    with wired_llm_api() as api:
        assert calls == ["frozen"]  # during startup, before the first request is served
        assert api.http().get("/healthz").status_code == 200
    assert calls == ["frozen"]
