"""Fake web-search backends on loopback, speaking Serper's and SearXNG's real JSON.

- Serper: `POST /search` with `X-API-KEY`, body `{q, num, gl, hl, page, …}`, answer
  `{searchParameters, organic: [{title, link, snippet, position}], credits}`; a wrong key gets
  Serper's 403 `{"message": "Unauthorized.", "statusCode": 403}`.
- Serper's scraper: `POST /scrape` with `X-API-KEY`, body `{url, includeMarkdown}`, answer `{text,
  markdown?, metadata, credits}` for the corpus pages, Serper's 400 for any other URL.
- SearXNG: `GET /search?q=…&format=json`, answer `{query, number_of_results, results: [{url, title,
  content, engine, engines, score, category}], answers, suggestions, infoboxes,
  unresponsive_engines}`; without `format=json` SearXNG answers 403, and so does this fake.

Both search one small in-memory corpus (every query word counts once per page that contains it), so
results depend on the query. Faults are injected per engine with `fail(engine, Fault(...))`: an HTTP
status, a delay longer than the client's timeout, or a body that is not the engine's JSON.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SERPER_KEY = "serper-test-key"

CORPUS: tuple[tuple[str, str, str], ...] = (
    (
        "Python (programming language)",
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
        "Python is a high-level, general-purpose programming language. Its design philosophy "
        "emphasizes code readability with the use of significant indentation.",
    ),
    (
        "Welcome to Python.org",
        "https://www.python.org/",
        "The official home of the Python Programming Language.",
    ),
    (
        "PostgreSQL: The World's Most Advanced Open Source Relational Database",
        "https://www.postgresql.org/",
        "PostgreSQL is a powerful, open source object-relational database system.",
    ),
    (
        "pgvector: Open-source vector similarity search for Postgres",
        "https://github.com/pgvector/pgvector",
        "Store your vectors with the rest of your data. Supports exact and approximate nearest "
        "neighbor search in Postgres.",
    ),
    (
        "Model Context Protocol",
        "https://modelcontextprotocol.io/",
        "The Model Context Protocol (MCP) is an open protocol that connects AI applications to "
        "tools and data sources.",
    ),
)


@dataclass
class Fault:
    status: int | None = None
    delay: float = 0.0
    garbage: bool = False


@dataclass
class FakeSearch:
    url: str = ""
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    _faults: dict[str, deque[Fault]] = field(default_factory=lambda: {"serper": deque(), "searxng": deque()})

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/search", self._serper, methods=["POST"])
        self.app.add_api_route("/search", self._searxng, methods=["GET"])
        self.app.add_api_route("/scrape", self._serper_scrape, methods=["POST"])

    def fail(self, engine: str, *faults: Fault) -> None:
        self._faults[engine].extend(faults)

    def reset(self) -> None:
        self.requests.clear()
        for queue in self._faults.values():
            queue.clear()

    def engine_calls(self, engine: str) -> list[dict[str, Any]]:
        return [params for name, params, _ in self.requests if name == engine]

    async def _fault(self, engine: str) -> Response | None:
        if not self._faults[engine]:
            return None
        fault = self._faults[engine].popleft()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status:
            return JSONResponse({"error": "injected"}, status_code=fault.status)
        if fault.garbage:
            return Response(b"<html>rate limited</html>", media_type="text/html")
        return None

    async def _serper(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(("serper", body, dict(request.headers)))
        if request.headers.get("x-api-key") != SERPER_KEY:
            return JSONResponse({"message": "Unauthorized.", "statusCode": 403}, status_code=403)
        if (fault := await self._fault("serper")) is not None:
            return fault
        hits = _search(body["q"])[: int(body.get("num", 10))]
        organic = [
            {"title": title, "link": link, "snippet": text, "position": position}
            for position, (title, link, text) in enumerate(hits, start=1)
        ]
        parameters = {"q": body["q"], "type": "search", "engine": "google", "num": body.get("num", 10)}
        parameters.update({key: body[key] for key in ("gl", "hl", "location", "tbs", "page") if key in body})
        return JSONResponse({"searchParameters": parameters, "organic": organic, "credits": 1})

    async def _serper_scrape(self, request: Request) -> Response:
        """Serper's scraper (`POST https://scrape.serper.dev`), knowing the corpus pages only."""
        body = orjson.loads(await request.body())
        self.requests.append(("serper-scrape", body, dict(request.headers)))
        if request.headers.get("x-api-key") != SERPER_KEY:
            return JSONResponse({"message": "Unauthorized.", "statusCode": 403}, status_code=403)
        if (fault := await self._fault("serper")) is not None:
            return fault
        for title, link, text in CORPUS:
            if link == body.get("url"):
                answer: dict[str, Any] = {
                    "text": text,
                    "metadata": {"title": title, "og:url": link},
                    "credits": 1,
                }
                if body.get("includeMarkdown"):
                    answer["markdown"] = f"# {title}\n\n{text}"
                return JSONResponse(answer)
        return JSONResponse({"message": "Failed to scrape the page.", "statusCode": 400}, status_code=400)

    async def _searxng(self, request: Request) -> Response:
        params = dict(request.query_params)
        self.requests.append(("searxng", params, dict(request.headers)))
        if params.get("format") != "json":
            return Response("Forbidden", status_code=403)
        if (fault := await self._fault("searxng")) is not None:
            return fault
        hits = _search(params.get("q", ""))
        results = [
            {
                "url": link,
                "title": title,
                "content": text,
                "engine": "duckduckgo",
                "engines": ["duckduckgo", "brave"],
                "positions": [position],
                "score": 1.0 / position,
                "category": "general",
                "template": "default.html",
            }
            for position, (title, link, text) in enumerate(hits, start=1)
        ]
        return JSONResponse(
            {
                "query": params.get("q", ""),
                "number_of_results": len(results),
                "results": results,
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )


def _search(query: str) -> list[tuple[str, str, str]]:
    words = {w for w in re.findall(r"[a-z0-9]+", query.lower()) if w not in {"site", "or"}}
    scored = []
    for rank, (title, link, text) in enumerate(CORPUS):
        haystack = f"{title} {text}".lower()
        score = sum(1 for word in words if word in haystack)
        if score:
            scored.append((-score, rank, (title, link, text)))
    return [hit for *_, hit in sorted(scored)]
