"""One CORS policy: a browser gets the same answer from the apps (local mode) as from Kong."""

from __future__ import annotations

from typing import Any

import httpx

from apps.common.cors import CORS
from apps.common.service import service_app
from apps.common.settings import ServiceSettings
from infra.specs.kong import KongInputs, kong_config

ORIGIN = "https://chat.example.com"


def _kong_cors() -> dict[str, Any]:
    config = kong_config(KongInputs(namespace="jan", cors_origins=(ORIGIN,)))
    (plugin,) = [plugin["config"] for plugin in config["plugins"] if plugin["name"] == "cors"]
    found: dict[str, Any] = plugin
    return found


def _words(header: str | None) -> set[str]:
    return {word.strip().lower() for word in (header or "").split(",") if word.strip()}


async def test_the_apps_and_kong_answer_browsers_alike() -> None:
    app = service_app(ServiceSettings(service_name="cors-test", cors_origins=(ORIGIN,)), title="cors")
    kong = _kong_cors()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        preflight = await client.options(
            "/healthz",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": ", ".join(kong["headers"]),
            },
        )
        simple = await client.get("/healthz", headers={"Origin": ORIGIN})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert _words(preflight.headers["access-control-allow-methods"]) == _words(",".join(kong["methods"]))
    assert _words(preflight.headers["access-control-allow-headers"]) >= _words(",".join(kong["headers"]))
    assert int(preflight.headers["access-control-max-age"]) == kong["max_age"]
    exposed = _words(simple.headers["access-control-expose-headers"])
    assert exposed == _words(",".join(kong["exposed_headers"]))
    # Neither invites credentials (Kong: `credentials: false`; the apps send no allow-credentials).
    assert kong["credentials"] is False
    assert "access-control-allow-credentials" not in preflight.headers
    assert "access-control-allow-credentials" not in simple.headers
    assert kong["origins"] == [ORIGIN]
    assert set(kong["headers"]) == set(CORS.headers)
