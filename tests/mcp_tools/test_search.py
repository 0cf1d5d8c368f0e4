"""`google_search` against loopback fakes of Serper and SearXNG, fallbacks included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from apps.mcp_tools.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.search import SERPER_KEY, FakeSearch, Fault
from tests.harness.server import serve


async def search_as_alice(server_url: str, issuer: TestIssuer, arguments: dict[str, Any]) -> Any:
    async with mcp_session(server_url, issuer.mint("alice")) as session:
        return await session.call_tool("google_search", arguments)


async def test_serper_answers_first_with_normalised_results(
    mcp_server: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    result = payload(
        await search_as_alice(
            mcp_server.url, issuer, {"q": "python programming", "num": 2, "gl": "de", "hl": "en"}
        )
    )
    assert result["engine"] == "serper" and result["fallbacks"] == []
    assert [r["position"] for r in result["results"]] == [1, 2]
    first = result["results"][0]
    assert first["title"] == "Python (programming language)"
    assert first["url"] == "https://en.wikipedia.org/wiki/Python_(programming_language)"
    assert first["snippet"].startswith("Python is a high-level")
    assert result["citations"] == [r["url"] for r in result["results"]]
    [(engine, body, headers)] = search.requests
    assert engine == "serper" and headers["x-api-key"] == SERPER_KEY
    assert body == {"q": "python programming", "num": 2, "autocorrect": True, "gl": "de", "hl": "en"}


async def test_serper_failure_falls_back_to_searxng(
    mcp_server: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    search.fail("serper", Fault(status=500))
    result = payload(await search_as_alice(mcp_server.url, issuer, {"q": "postgres vector search"}))
    assert result["engine"] == "searxng"
    assert result["fallbacks"] == [{"engine": "serper", "reason": "HTTP 500"}]
    assert result["results"][0]["url"] == "https://github.com/pgvector/pgvector"
    assert result["results"][0]["source"] == "searxng:duckduckgo"
    assert search.engine_calls("searxng")[0]["format"] == "json"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(delay=3.0), "no answer within 2s"),
        (Fault(status=429), "HTTP 429"),
        (Fault(garbage=True), "unexpected answer"),
    ],
)
async def test_every_kind_of_serper_failure_falls_back(
    mcp_server: McpServer, issuer: TestIssuer, search: FakeSearch, fault: Fault, reason: str
) -> None:
    search.fail("serper", fault)
    result = payload(await search_as_alice(mcp_server.url, issuer, {"q": "model context protocol"}))
    assert result["engine"] == "searxng"
    assert result["fallbacks"][0]["reason"].startswith(reason)
    assert result["results"][0]["url"] == "https://modelcontextprotocol.io/"


async def test_both_engines_failing_is_a_tool_error_naming_both(
    mcp_server: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    search.fail("serper", Fault(status=503))
    search.fail("searxng", Fault(status=502))
    message = error_text(await search_as_alice(mcp_server.url, issuer, {"q": "python"}))
    assert "serper: HTTP 503" in message and "searxng: HTTP 502" in message
    assert "Try again" in message


async def test_domain_allow_list_and_time_range_reach_the_engines(
    mcp_server: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    search.fail("serper", Fault(status=500))
    arguments = {
        "q": "python",
        "domain_allow_list": ["https://www.Python.org/downloads", "python.org", "docs.python.org"],
        "tbs": "qdr:w",
        "page": 2,
        "hl": "en",
    }
    payload(await search_as_alice(mcp_server.url, issuer, arguments))
    expected_q = "(python) (site:python.org OR site:docs.python.org)"
    [serper] = search.engine_calls("serper")
    assert serper["q"] == expected_q and serper["tbs"] == "qdr:w" and serper["page"] == 2
    [searxng] = search.engine_calls("searxng")
    assert searxng["q"] == expected_q
    assert searxng["time_range"] == "week" and searxng["pageno"] == "2" and searxng["language"] == "en"


@pytest.fixture(scope="module")
def searxng_only(settings_factory: Any) -> Iterator[McpServer]:
    app = create_app(settings_factory(serper_api_key=None))
    with serve(app) as server:
        yield McpServer(server.url, app)


async def test_without_a_serper_key_searxng_is_used(
    searxng_only: McpServer, issuer: TestIssuer, search: FakeSearch
) -> None:
    result = payload(await search_as_alice(searxng_only.url, issuer, {"q": "postgresql database", "num": 1}))
    assert result["engine"] == "searxng" and result["fallbacks"] == []
    assert len(result["results"]) == 1
    assert search.engine_calls("serper") == []


async def test_a_wrong_serper_key_falls_back(
    settings_factory: Any, issuer: TestIssuer, search: FakeSearch
) -> None:
    app = create_app(settings_factory(serper_api_key=SecretStr("wrong")))
    with serve(app) as server:
        result = payload(await search_as_alice(server.url, issuer, {"q": "python"}))
    assert result["engine"] == "searxng"
    assert result["fallbacks"] == [{"engine": "serper", "reason": "HTTP 403"}]


async def test_no_engine_configured_tells_the_model_what_is_missing(
    settings_factory: Any, issuer: TestIssuer
) -> None:
    app = create_app(settings_factory(serper_api_key=None, searxng_url=None))
    with serve(app) as server:
        message = error_text(await search_as_alice(server.url, issuer, {"q": "python"}))
    assert "not configured" in message and "SEARXNG_URL" in message
