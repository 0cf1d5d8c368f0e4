"""A stand-in for media-api's `POST /v1/media/resolve`, speaking its contract over loopback.

Request `{"payload": {...}}` → the same payload with every `data:<mime>;jan_<id>` placeholder
replaced by a URL; an unknown id answers 404 in the OpenAI envelope, a missing bearer 401. Tests
register ids with `add()`, can make it fail with `status` or answer late with `delay` (seconds), and
read the `Authorization` and `traceparent` headers it saw.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

PLACEHOLDER = re.compile(r"data:([a-z]+/[a-z0-9.+-]+);(jan_[A-Za-z0-9]+)")


@dataclass
class FakeMedia:
    url: str = ""
    known: dict[str, str] = field(default_factory=dict)
    authorizations: list[str | None] = field(default_factory=list)
    traceparents: list[str | None] = field(default_factory=list)
    status: int | None = None  # force this status on every call
    delay: float = 0.0

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/v1/media/resolve", self._resolve, methods=["POST"])

    @property
    def resolve_url(self) -> str:
        return f"{self.url}/v1/media/resolve"

    def add(self, media_id: str, url: str) -> None:
        self.known[media_id] = url

    def reset(self) -> None:
        self.known.clear()
        self.authorizations.clear()
        self.traceparents.clear()
        self.status = None
        self.delay = 0.0

    async def _resolve(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        self.authorizations.append(authorization)
        self.traceparents.append(request.headers.get("traceparent"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status is not None:
            return JSONResponse({"error": {"message": "forced failure"}}, status_code=self.status)
        if not authorization:
            return JSONResponse({"error": {"message": "unauthorized"}}, status_code=401)
        payload: Any = orjson.loads(await request.body())["payload"]
        text = orjson.dumps(payload).decode()
        for match in PLACEHOLDER.finditer(text):
            if match.group(2) not in self.known:
                return JSONResponse(
                    {"error": {"message": f"unknown media id {match.group(2)}", "code": "not_found"}},
                    status_code=404,
                )
        resolved = PLACEHOLDER.sub(lambda m: self.known[m.group(2)], text)
        return JSONResponse({"payload": orjson.loads(resolved)})
