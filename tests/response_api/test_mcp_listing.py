"""A tool listing served from the catalog, in pages, gives the session every page's tools.

`McpSession.adopt_listing` hands the SDK's session the pages it would have read itself. The SDK's
`complete` flag means "this page is the whole tool universe" and prunes the session's per-tool state
(output schemas, their validators, x-mcp-header maps) down to that page's tools: the SDK sets it only
for an uncursored listing of one page. The last page of a longer listing is not the whole listing,
so marking it complete would forget the tools of the pages before it.
"""

from __future__ import annotations

import anyio
from mcp import ClientSession
from mcp.types import ListToolsResult, Tool

from apps.response_api.services.mcp import Listing, McpSession

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def tool(name: str) -> Tool:
    return Tool(name=name, input_schema={"type": "object"}, output_schema=SCHEMA)


async def test_every_page_of_a_paginated_listing_stays_known_to_the_session() -> None:
    send, receive = anyio.create_memory_object_stream[object](1)
    async with send, receive:
        session = ClientSession(receive, send)  # type: ignore[arg-type]  # never connected: state only
        pages = [
            ListToolsResult(tools=[tool("first")], next_cursor="2"),
            ListToolsResult(tools=[tool("second")], next_cursor="3"),
            ListToolsResult(tools=[tool("last")]),
        ]
        McpSession(session).adopt_listing(Listing(tools=[], pages=pages))
        assert set(session._tool_output_schemas) == {"first", "second", "last"}


async def test_a_one_page_listing_replaces_what_the_session_knew() -> None:
    send, receive = anyio.create_memory_object_stream[object](1)
    async with send, receive:
        session = ClientSession(receive, send)  # type: ignore[arg-type]
        adopt = McpSession(session).adopt_listing
        adopt(Listing(tools=[], pages=[ListToolsResult(tools=[tool("gone")])]))
        adopt(Listing(tools=[], pages=[ListToolsResult(tools=[tool("kept")])]))
        assert set(session._tool_output_schemas) == {"kept"}
