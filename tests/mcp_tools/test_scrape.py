"""`scrape` of loopback pages (allowed by the test allow-list) and refusals of private targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from apps.common.safe_fetch import FetchPolicy, SafeFetcher
from apps.mcp_tools.main import create_app
from apps.mcp_tools.tools.context import ToolServices
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.search import FakeSearch
from tests.harness.server import serve
from tests.harness.ssrf import UNSAFE_URLS, fake_dns

ARTICLE = """<!doctype html>
<html lang="en-GB">
<head>
  <meta charset="utf-8">
  <title>Tides explained | Ocean Notes</title>
  <meta name="description" content="Why the sea rises and falls twice a day.">
  <link rel="canonical" href="https://ocean.example/tides">
</head>
<body>
  <nav><a href="/">Home</a> <a href="/about">About</a> Menu Menu Menu</nav>
  <article>
    <h1>Tides explained</h1>
    <p>Tides are the rise and fall of sea levels caused by the combined effects of the gravitational
    forces exerted by the Moon and the Sun, and the rotation of the Earth.</p>
    <p>Most coastal places see two high tides and two low tides every lunar day. Read more in the
    <a href="https://en.wikipedia.org/wiki/Tide">encyclopedia article</a> or our
    <a href="/moon#gravity">page on the Moon</a>.</p>
  </article>
  <footer>Copyright Ocean Notes. All rights reserved.</footer>
  <script>window.tracking = "do not read me";</script>
</body>
</html>"""


def build_site() -> FastAPI:
    app = FastAPI()

    @app.get("/tides")
    async def tides() -> HTMLResponse:
        return HTMLResponse(ARTICLE)

    @app.get("/notes.txt")
    async def notes() -> PlainTextResponse:
        return PlainTextResponse("Plain notes: high water at 06:12.")

    @app.get("/missing")
    async def missing() -> Response:
        return Response("gone", status_code=404)

    @app.get("/huge")
    async def huge() -> PlainTextResponse:
        return PlainTextResponse("x" * (6 * 1024 * 1024))

    @app.get("/moved")
    async def moved() -> RedirectResponse:
        return RedirectResponse("/tides")

    @app.get("/image.png")
    async def image() -> Response:
        return Response(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, media_type="image/png")

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve(build_site()) as server:
        yield server.url


async def scrape(server: McpServer, issuer: TestIssuer, **arguments: Any) -> Any:
    async with mcp_session(server.url, issuer.mint("alice")) as session:
        return await session.call_tool("scrape", arguments)


async def test_a_page_comes_back_as_main_text_with_metadata(
    mcp_server: McpServer, issuer: TestIssuer, site: str
) -> None:
    result = payload(await scrape(mcp_server, issuer, url=f"{site}/tides"))
    text = result["text"]
    assert "gravitational forces exerted by the Moon" in text
    assert "do not read me" not in text and "Menu Menu" not in text
    assert result["text_preview"] == text[:600] or text.startswith(result["text_preview"].rstrip("…"))
    metadata = result["metadata"]
    assert metadata["title"].startswith("Tides explained")
    assert metadata["description"] == "Why the sea rises and falls twice a day."
    assert metadata["canonical_url"] == "https://ocean.example/tides"
    assert metadata["language"] == "en-GB"
    assert metadata["content_type"] == "text/html"
    links = {link["url"]: link["text"] for link in metadata["links"]}
    assert links["https://en.wikipedia.org/wiki/Tide"] == "encyclopedia article"
    assert f"{site}/moon" in links and f"{site}/about" in links
    assert result["backend"] == "direct" and "markdown" not in result


async def test_markdown_keeps_headings_and_links(
    mcp_server: McpServer, issuer: TestIssuer, site: str
) -> None:
    result = payload(await scrape(mcp_server, issuer, url=f"{site}/tides", includeMarkdown=True))
    assert "# Tides explained" in result["markdown"]
    assert "[encyclopedia article](https://en.wikipedia.org/wiki/Tide)" in result["markdown"]


async def test_redirects_are_followed(mcp_server: McpServer, issuer: TestIssuer, site: str) -> None:
    result = payload(await scrape(mcp_server, issuer, url=f"{site}/moved"))
    assert result["metadata"]["final_url"] == f"{site}/tides"
    assert "lunar day" in result["text"]


async def test_plain_text_is_returned_as_is(mcp_server: McpServer, issuer: TestIssuer, site: str) -> None:
    result = payload(await scrape(mcp_server, issuer, url=f"{site}/notes.txt"))
    assert result["text"] == "Plain notes: high water at 06:12."
    assert result["metadata"]["content_type"] == "text/plain"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing", "answered HTTP 404"),
        ("/huge", "larger than the limit"),
        ("/image.png", "cannot be read as text"),
    ],
)
async def test_unreadable_pages_are_tool_errors(
    mcp_server: McpServer, issuer: TestIssuer, site: str, path: str, expected: str
) -> None:
    assert expected in error_text(await scrape(mcp_server, issuer, url=f"{site}{path}"))


@pytest.fixture
def guarded(mcp_server: McpServer) -> Iterator[McpServer]:
    """The same server with the production policy (no allow-list) and a fake DNS for the test names."""
    services: ToolServices = mcp_server.app.state.tools
    original = services.scraper.fetcher
    services.scraper.fetcher = SafeFetcher(FetchPolicy(), resolver=fake_dns)
    try:
        yield mcp_server
    finally:
        services.scraper.fetcher = original


@pytest.mark.parametrize("url", UNSAFE_URLS)
async def test_private_and_odd_targets_are_refused(guarded: McpServer, issuer: TestIssuer, url: str) -> None:
    message = error_text(await scrape(guarded, issuer, url=url))
    assert message.startswith("Error executing tool scrape: Could not fetch")
    assert any(
        reason in message
        for reason in ("non-public address", "Only http and https", "credentials", "could not be resolved")
    )


async def test_loopback_is_refused_without_the_allow_list(
    guarded: McpServer, issuer: TestIssuer, site: str
) -> None:
    assert "non-public address" in error_text(await scrape(guarded, issuer, url=f"{site}/tides"))


@pytest.fixture(scope="module")
def with_serper_scraper(settings_factory: Any, search_server: FakeSearch) -> Iterator[McpServer]:
    app = create_app(settings_factory(serper_scrape_url=f"{search_server.url}/scrape"))
    with serve(app) as server:
        yield McpServer(server.url, app)


async def test_serper_scraper_answers_when_configured(
    with_serper_scraper: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    result = payload(
        await scrape(with_serper_scraper, issuer, url="https://www.python.org/", includeMarkdown=True)
    )
    assert result["backend"] == "serper"
    assert result["text"] == "The official home of the Python Programming Language."
    assert result["markdown"].startswith("# Welcome to Python.org")
    assert result["metadata"]["title"] == "Welcome to Python.org"
    [(engine, body, _)] = search.requests
    assert engine == "serper-scrape" and body == {"url": "https://www.python.org/", "includeMarkdown": True}


async def test_serper_scraper_failure_falls_back_to_a_direct_fetch(
    with_serper_scraper: McpServer, issuer: TestIssuer, search: FakeSearch, site: str
) -> None:
    result = payload(await scrape(with_serper_scraper, issuer, url=f"{site}/tides"))
    assert result["backend"] == "direct" and "lunar day" in result["text"]
    assert [engine for engine, *_ in search.requests] == ["serper-scrape"]


async def test_a_caller_that_asks_is_told_the_scrape_started(
    mcp_server: McpServer, issuer: TestIssuer, site: str
) -> None:
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async with mcp_session(mcp_server.url, issuer.mint("reader")) as session:
        result = await session.call_tool("scrape", {"url": f"{site}/tides"}, progress_callback=on_progress)
    assert "Tides explained" in payload(result)["text"]
    assert notes[0] == "scrape: started"
