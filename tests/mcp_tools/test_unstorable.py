"""file_search: text the document store cannot keep is the caller's error, named, not an outage."""

from __future__ import annotations

import uuid
from typing import Any

from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.media_content import FakeMedia
from tests.harness.upstream import FakeUpstream
from tests.mcp_tools.test_file_search import simple_pdf


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


def pdf_mapping(text: str, code: str, maps_to: str) -> bytes:
    """A one-page PDF showing `text` whose font maps the character `code` to the UTF-16 code unit
    `maps_to` (hex) for text extraction: a PDF can say a glyph is an unpaired surrogate."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"1 begincodespacerange <00> <FF> endcodespacerange\n"
        b"1 beginbfchar <%s> <%s> endbfchar\n"
        % (code.encode().hex().upper().encode(), maps_to.encode())
        + b"endcmap CMapName currentdict /CMap defineresource pop end end"
    )
    return simple_pdf(text, to_unicode=cmap)


async def test_an_uploaded_pdf_whose_text_holds_an_unpaired_surrogate_is_indexed_with_it_replaced(
    mcp_server: McpServer, issuer: TestIssuer, media_server: FakeMedia, upstream: FakeUpstream
) -> None:
    user = f"pdf-{uuid.uuid4().hex[:8]}"
    media_server.files["jan_surrogate1"] = (
        user,
        "application/pdf",
        pdf_mapping("Lava flows Q here", "Q", "D800"),
    )
    async with mcp_session(mcp_server.url, issuer.mint(user)) as session:
        indexed = payload(await session.call_tool("file_search_index", {"document_id": "jan_surrogate1"}))
        assert indexed["status"] == "indexed", indexed
        found = payload(await session.call_tool("file_search_query", {"query": "lava flows"}))
    assert found["results"][0]["text"] == "Lava flows \ufffd here"
