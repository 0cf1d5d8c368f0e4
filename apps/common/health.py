"""Liveness and readiness.

`/healthz` only says the process serves requests. `/readyz` runs every readiness check the app
registered (database, object store, upstreams it cannot work without) concurrently with a short
timeout and answers 503 with each check's status when any fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from apps.common.guard import GuardedRoute
from apps.common.state import app_state

ReadinessCheck = Callable[[], Awaitable[None]]

CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"], route_class=GuardedRoute)


class Readiness:
    """The named checks one app runs for `/readyz`."""

    def __init__(self) -> None:
        self._checks: dict[str, ReadinessCheck] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    async def run(self) -> tuple[bool, dict[str, Any]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_one(self._checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result["status"] == "ok" for result in checks.values())
        return ready, checks

    @staticmethod
    async def _run_one(check: ReadinessCheck) -> dict[str, Any]:
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"status": "error", "error": "timed out"}
        except Exception as exc:  # a failing dependency must become a 503, whatever it raised
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"status": "ok"}


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.settings.service_name}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    readiness = app_state(request, "readiness", Readiness)
    ready, checks = await readiness.run()
    body = {
        "status": "ready" if ready else "not_ready",
        "service": request.app.state.settings.service_name,
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if ready else 503)
