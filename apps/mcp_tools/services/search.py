"""Web search through Serper or SearXNG, with a fallback order.

Engines are tried in `search_engines` order (default: Serper, then SearXNG), skipping any engine
without its key/URL. When one fails (timeout, connection error, 4xx/5xx, a body that is not the
engine's JSON), the next one is asked and the failure is reported in `fallbacks`; only when every
configured engine fails does the tool fail. The original service fell back to DuckDuckGo's Instant
Answer API as a last resort; that is not an index of the web and not something an operator
configured, so it is left out: with no engine configured the tool says what to set.

Both engines' answers are normalised to `{position, title, url, snippet, source}` and the URLs are
repeated in `citations` so a model can cite them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from apps.mcp_tools.services.errors import ToolFailure

SNIPPET_LIMIT = 420
USER_AGENT = "Jan-MCP-Tools/1.0"

# Serper's `tbs` (Google's "qdr:" ranges) mapped to SearXNG's `time_range`; SearXNG has no hour range.
_TIME_RANGES = {"qdr:h": "day", "qdr:d": "day", "qdr:w": "week", "qdr:m": "month", "qdr:y": "year"}


@dataclass(frozen=True)
class SearchQuery:
    q: str
    num: int = 10
    gl: str | None = None
    hl: str | None = None
    location: str | None = None
    tbs: str | None = None
    page: int = 1
    autocorrect: bool = True
    domain_allow_list: tuple[str, ...] = ()

    @property
    def effective_q(self) -> str:
        """The query restricted to the allowed domains, when there are any."""
        domains = sanitize_domains(self.domain_allow_list)
        if not domains:
            return self.q
        return f"({self.q}) ({' OR '.join(f'site:{d}' for d in domains)})"


@dataclass(frozen=True)
class SearchHit:
    title: str
    url: str
    snippet: str
    source: str
    date: str | None = None


@dataclass
class SearchAnswer:
    query: str
    engine: str
    hits: list[SearchHit]
    fallbacks: list[dict[str, str]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        results = [
            {
                "position": position,
                "title": hit.title,
                "url": hit.url,
                "source_url": hit.url,
                "snippet": hit.snippet,
                "source": hit.source,
                **({"date": hit.date} if hit.date else {}),
            }
            for position, hit in enumerate(self.hits, start=1)
        ]
        return {
            "query": self.query,
            "engine": self.engine,
            "results": results,
            "citations": [hit.url for hit in self.hits],
            "fallbacks": self.fallbacks,
        }


class SearchEngineClient(Protocol):
    name: str

    async def search(self, query: SearchQuery) -> list[SearchHit]: ...


def sanitize_domains(domains: Sequence[str]) -> list[str]:
    """Lower-case, without scheme, `www.` or path; duplicates and empties dropped, order kept."""
    seen: list[str] = []
    for raw in domains:
        domain = raw.strip().lower()
        domain = domain.split("://", 1)[-1].split("/", 1)[0]
        domain = domain.removeprefix("www.")
        if domain and domain not in seen:
            seen.append(domain)
    return seen


def clip(text: str, limit: int = SNIPPET_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


class SerperClient:
    """`POST {base}/search` with `X-API-KEY`, Serper's Google results."""

    name = "serper"

    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/search"
        self._key = api_key

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        body: dict[str, Any] = {"q": query.effective_q, "num": query.num, "autocorrect": query.autocorrect}
        optional = {"gl": query.gl, "hl": query.hl, "location": query.location, "tbs": query.tbs}
        body.update({key: value for key, value in optional.items() if value})
        if query.page > 1:
            body["page"] = query.page
        response = await self._client.post(self._url, json=body, headers={"X-API-KEY": self._key})
        response.raise_for_status()
        organic = _json_object(response).get("organic")
        if not isinstance(organic, list):
            raise ValueError("no 'organic' list in the answer")
        return [
            SearchHit(
                title=str(item.get("title", "")),
                url=str(item["link"]),
                snippet=clip(str(item.get("snippet", ""))),
                source=self.name,
                date=item.get("date"),
            )
            for item in organic[: query.num]
            if isinstance(item, dict) and item.get("link")
        ]


class SearxngClient:
    """`GET {base}/search?format=json`, a SearXNG instance's aggregated results."""

    name = "searxng"

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/search"

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        params: dict[str, str | int] = {"q": query.effective_q, "format": "json", "safesearch": 1}
        if query.hl:
            params["language"] = query.hl
        if query.page > 1:
            params["pageno"] = query.page
        if query.tbs in _TIME_RANGES:
            params["time_range"] = _TIME_RANGES[query.tbs]
        response = await self._client.get(self._url, params=params)
        response.raise_for_status()
        results = _json_object(response).get("results")
        if not isinstance(results, list):
            raise ValueError("no 'results' list in the answer")
        return [
            SearchHit(
                title=str(item.get("title", "")),
                url=str(item["url"]),
                snippet=clip(str(item.get("content") or "")),
                source=f"searxng:{item.get('engine', 'unknown')}",
                date=item.get("publishedDate"),
            )
            for item in results[: query.num]
            if isinstance(item, dict) and item.get("url")
        ]


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    return body


class WebSearch:
    """Asks each configured engine in turn until one answers."""

    def __init__(self, engines: Sequence[SearchEngineClient], timeout_seconds: float) -> None:
        self.engines = list(engines)
        self.timeout_seconds = timeout_seconds

    async def search(self, query: SearchQuery) -> SearchAnswer:
        if not self.engines:
            raise ToolFailure(
                "Web search is not configured on this server (the operator must set SERPER_API_KEY "
                "or SEARXNG_URL). Answer from your own knowledge and say that you could not search."
            )
        fallbacks: list[dict[str, str]] = []
        for engine in self.engines:
            try:
                hits = await engine.search(query)
            except Exception as exc:  # any engine failure moves on to the next engine
                fallbacks.append({"engine": engine.name, "reason": self._reason(exc)})
                continue
            return SearchAnswer(query.q, engine.name, hits, fallbacks)
        tried = "; ".join(f"{f['engine']}: {f['reason']}" for f in fallbacks)
        raise ToolFailure(f"Every search engine failed ({tried}). Try again in a moment.")

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"no answer within {self.timeout_seconds:g}s"
        if isinstance(exc, httpx.HTTPStatusError):
            return f"HTTP {exc.response.status_code}"
        if isinstance(exc, httpx.HTTPError):
            return f"connection failed ({type(exc).__name__})"
        return f"unexpected answer ({exc})"
