"""file_search: text the document store cannot keep is the caller's error, named, not an outage."""

from __future__ import annotations

import uuid
from typing import Any

from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.upstream import FakeUpstream


async def test_nul_in_arguments_is_named(
    mcp_server: McpServer, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    token = issuer.mint(f"nul-{uuid.uuid4().hex[:8]}")
    async with mcp_session(mcp_server.url, token) as session:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("file_search_index", {"document_id": "doc", "text": "lava\x00flows"}, "`text`"),
            ("file_search_index", {"document_id": "doc", "text": "ok", "tags": ["a\x00"]}, "`tags.0`"),
            (
                "file_search_index",
                {"document_id": "doc", "text": "ok", "metadata": {"k": "\x00"}},
                "`metadata.k`",
            ),
            ("file_search_query", {"query": "lava\x00"}, "`query`"),
        ]
        for tool, arguments, named in cases:
            result = await session.call_tool(tool, arguments)
            message = error_text(result)
            assert named in message and "NUL" in message, message
            assert "unavailable" not in message
        indexed = payload(
            await session.call_tool("file_search_index", {"document_id": "doc", "text": "lava flows"})
        )
        assert indexed["status"] == "indexed"
