"""`google_search` and `scrape`: the web tools.

Argument names are the original service's (`q`, `gl`, `hl`, `num`, `tbs`, `includeMarkdown`, …) so
existing prompts and clients keep working. Every string argument has a length limit, so an
oversized argument is refused with a tool error before any backend is called.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from apps.mcp_tools.services.search import SearchQuery
from apps.mcp_tools.tools.context import ToolContext, services_of
from apps.mcp_tools.tools.progress import with_progress

SEARCH_DESCRIPTION = (
    "Search the web (Google results through Serper, or a SearXNG metasearch instance). Returns ranked "
    "results with title, url and snippet, plus `citations` (the result URLs) to cite in your answer. "
    "Use it for current events, facts you are unsure of, or to find pages to read with `scrape`."
)

SCRAPE_DESCRIPTION = (
    "Read one web page: returns its main text (navigation and boilerplate removed) and metadata "
    "(title, description, canonical URL, language, links). Set includeMarkdown for a Markdown "
    "version that keeps headings and links. Only public http(s) URLs can be read."
)


async def google_search(
    q: Annotated[str, Field(min_length=1, max_length=2000, description="The search query.")],
    ctx: ToolContext,
    num: Annotated[int, Field(ge=1, le=20, description="Number of results to return (1-20).")] = 10,
    gl: Annotated[
        str | None, Field(max_length=8, description="Country to search from, e.g. 'us', 'de'.")
    ] = None,
    hl: Annotated[
        str | None, Field(max_length=16, description="Interface/result language, e.g. 'en'.")
    ] = None,
    location: Annotated[
        str | None, Field(max_length=200, description="Place to search from, e.g. 'Berlin, Germany'.")
    ] = None,
    tbs: Annotated[
        Literal["qdr:h", "qdr:d", "qdr:w", "qdr:m", "qdr:y"] | None,
        Field(description="Only results from the past hour/day/week/month/year."),
    ] = None,
    page: Annotated[int, Field(ge=1, le=10, description="Result page (1 = first).")] = 1,
    autocorrect: Annotated[bool, Field(description="Let the engine correct spelling.")] = True,
    domain_allow_list: Annotated[
        list[Annotated[str, Field(max_length=253)]],
        Field(max_length=20, description="Only return results from these domains, e.g. ['python.org']."),
    ] = [],  # noqa: B006 - never mutated; the SDK builds the schema from the signature
) -> dict[str, Any]:
    query = SearchQuery(
        q=q,
        num=num,
        gl=gl,
        hl=hl,
        location=location,
        tbs=tbs,
        page=page,
        autocorrect=autocorrect,
        domain_allow_list=tuple(domain_allow_list),
    )
    answer = await services_of(ctx).search.search(query)
    return answer.payload()


async def scrape(
    url: Annotated[str, Field(min_length=1, max_length=2048, description="The http(s) URL of the page.")],
    ctx: ToolContext,
    includeMarkdown: Annotated[bool, Field(description="Also return the page as Markdown.")] = False,
) -> dict[str, Any]:
    services = services_of(ctx)
    work = services.scraper.scrape(url, includeMarkdown)
    return await with_progress(ctx, work, what="scrape", every=services.progress_seconds)


def register(server: MCPServer[Any]) -> None:
    server.add_tool(google_search, description=SEARCH_DESCRIPTION)
    server.add_tool(scrape, description=SCRAPE_DESCRIPTION)
