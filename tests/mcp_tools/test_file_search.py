"""File search on real Postgres with pgvector: per-user collections, media ids, ranking."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from apps.gateway.embedded import free_port
from apps.mcp_tools.main import create_app
from apps.mcp_tools.services.file_search import chunk_text
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.media_content import FakeMedia
from tests.harness.server import serve
from tests.harness.upstream import FakeUpstream

DOCUMENTS = {
    "volcanoes": "Volcanoes erupt when magma rises through the crust; lava flows and ash clouds follow.",
    "baking": "Bread dough needs flour, water, yeast and salt; knead it, let it rise, then bake it.",
    "astronomy": "Telescopes collect light from distant galaxies, stars and planets in the night sky.",
}


def simple_pdf(text: str, *, to_unicode: bytes | None = None) -> bytes:
    """A one-page PDF whose page shows `text` (built by hand, with a correct xref table);
    `to_unicode`: a CMap its font gives text extraction for its glyphs."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    if to_unicode is None:
        objects.append(font + b" >>")
    else:
        objects.append(font + b" /ToUnicode 6 0 R >>")
        objects.append(b"<< /Length %d >>\nstream\n" % len(to_unicode) + to_unicode + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


async def call(server: McpServer, token: str, tool: str, **arguments: Any) -> Any:
    async with mcp_session(server.url, token) as session:
        return await session.call_tool(tool, arguments)


async def index_all(server: McpServer, token: str, collection: str) -> None:
    async with mcp_session(server.url, token) as session:
        for document_id, text in DOCUMENTS.items():
            result = payload(
                await session.call_tool(
                    "file_search_index",
                    {"document_id": document_id, "text": text, "collection": collection, "tags": ["demo"]},
                )
            )
            assert result["status"] == "indexed" and result["chunk_count"] == 1
            assert result["token_count"] == len(text.replace(";", " ").replace(",", " ").split())


async def test_three_documents_the_right_one_ranks_first(
    mcp_server: McpServer, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    alice = issuer.mint(f"alice-{collection}")
    await index_all(mcp_server, alice, collection)
    for query, expected in [
        ("how does lava come out of volcanoes", "volcanoes"),
        ("bake bread with yeast", "baking"),
        ("telescopes and galaxies", "astronomy"),
    ]:
        result = payload(
            await call(mcp_server, alice, "file_search_query", query=query, collection=collection)
        )
        assert result["count"] == 3
        first = result["results"][0]
        assert first["document_id"] == expected
        assert first["score"] > result["results"][1]["score"]
        assert first["tags"] == ["demo"] and first["text"] == DOCUMENTS[expected]


async def test_another_user_sees_nothing(mcp_server: McpServer, issuer: TestIssuer) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    await index_all(mcp_server, issuer.mint("owner"), collection)
    result = payload(
        await call(
            mcp_server, issuer.mint("intruder"), "file_search_query", query="volcanoes", collection=collection
        )
    )
    assert result["count"] == 0 and result["results"] == []


async def test_filters_top_k_and_replacement(mcp_server: McpServer, issuer: TestIssuer) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    token = issuer.mint("filterer")
    await index_all(mcp_server, token, collection)
    only = payload(
        await call(
            mcp_server,
            token,
            "file_search_query",
            query="volcanoes",
            collection=collection,
            document_ids=["baking"],
        )
    )
    assert [r["document_id"] for r in only["results"]] == ["baking"]
    top1 = payload(
        await call(mcp_server, token, "file_search_query", query="stars", collection=collection, top_k=1)
    )
    assert top1["count"] == 1 and top1["results"][0]["document_id"] == "astronomy"
    # Re-indexing an id replaces the document.
    payload(
        await call(
            mcp_server,
            token,
            "file_search_index",
            document_id="baking",
            text="Pizza ovens",
            collection=collection,
        )
    )
    again = payload(
        await call(mcp_server, token, "file_search_query", query="pizza ovens", collection=collection)
    )
    assert again["count"] == 3 and again["results"][0]["text"] == "Pizza ovens"


async def test_long_documents_are_chunked(mcp_server: McpServer, issuer: TestIssuer) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    token = issuer.mint("chunker")
    filler = " ".join(f"Paragraph {n} talks about gardening and soil." for n in range(60))
    text = f"{filler}\n\nThe secret ingredient of the soup is smoked paprika.\n\n{filler}"
    indexed = payload(
        await call(
            mcp_server, token, "file_search_index", document_id="long", text=text, collection=collection
        )
    )
    assert indexed["chunk_count"] == len(chunk_text(text)) > 3
    found = payload(
        await call(
            mcp_server,
            token,
            "file_search_query",
            query="secret soup ingredient paprika",
            collection=collection,
        )
    )
    assert "smoked paprika" in found["results"][0]["text"]


async def test_media_ids_are_fetched_as_the_caller(
    mcp_server: McpServer, issuer: TestIssuer, media_server: FakeMedia
) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    media_server.files["jan_1001p"] = ("dana", "text/markdown", b"# Ferries\nThe ferry leaves hourly.")
    media_server.files["jan_1002"] = ("dana", "application/pdf", simple_pdf("Invoice total due: 42 euros"))
    media_server.files["jan_1003"] = ("erin", "text/plain", b"Erin's private diary.")
    # Stored without a useful type: recognised by its content.
    media_server.files["jan_1004"] = ("dana", "binary/octet-stream", b"Harbour opening hours: 8 to 18.")
    dana = issuer.mint("dana")
    for media_id in ("jan_1001p", "jan_1002", "jan_1004"):
        result = payload(
            await call(mcp_server, dana, "file_search_index", document_id=media_id, collection=collection)
        )
        assert result["source"] == "media" and result["chunk_count"] == 1
    pdf = payload(
        await call(mcp_server, dana, "file_search_query", query="invoice total due", collection=collection)
    )
    assert pdf["results"][0]["document_id"] == "jan_1002"
    assert "42 euros" in pdf["results"][0]["text"]
    hours = payload(
        await call(mcp_server, dana, "file_search_query", query="harbour hours", collection=collection)
    )
    assert hours["results"][0]["document_id"] == "jan_1004"
    refused = error_text(
        await call(mcp_server, dana, "file_search_index", document_id="jan_1003", collection=collection)
    )
    assert "was not found (or is not yours)" in refused


async def test_bad_index_requests_are_tool_errors(mcp_server: McpServer, issuer: TestIssuer) -> None:
    token = issuer.mint("careless")
    no_text = error_text(await call(mcp_server, token, "file_search_index", document_id="notes"))
    assert "Pass `text`" in no_text
    big = error_text(
        await call(
            mcp_server, token, "file_search_index", document_id="m", text="x", metadata={"blob": "y" * 20_000}
        )
    )
    assert "metadata" in big and "too large" in big
    bad_collection = error_text(
        await call(mcp_server, token, "file_search_query", query="x", collection="../other-user")
    )
    assert "collection" in bad_collection


@pytest.fixture(scope="module")
def local_model_server(settings_factory: Any) -> Iterator[McpServer]:
    """No embeddings URL: the bundled all-MiniLM-L6-v2 runs in-process."""
    app = create_app(settings_factory(embeddings_url=None))
    with serve(app) as server:
        yield McpServer(server.url, app)


async def test_local_minilm_embeddings_rank_by_meaning(
    local_model_server: McpServer, issuer: TestIssuer
) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    token = issuer.mint("offline-user")
    await index_all(local_model_server, token, collection)
    # No shared words with the document: only a real sentence embedding finds it.
    result = payload(
        await call(
            local_model_server,
            token,
            "file_search_query",
            query="eruption of molten rock",
            collection=collection,
        )
    )
    assert result["results"][0]["document_id"] == "volcanoes"


async def test_vectors_of_another_model_are_not_compared(
    mcp_server: McpServer, local_model_server: McpServer, issuer: TestIssuer
) -> None:
    collection = f"c-{uuid.uuid4().hex[:8]}"
    token = issuer.mint("switcher")
    await index_all(mcp_server, token, collection)
    result = payload(
        await call(local_model_server, token, "file_search_query", query="volcano", collection=collection)
    )
    assert result["count"] == 0


async def test_without_any_embedding_model_the_tools_say_so(
    settings_factory: Any, issuer: TestIssuer
) -> None:
    app = create_app(settings_factory(embeddings_url=None, embeddings_local=False))
    with serve(app) as server:
        message = error_text(
            await call(McpServer(server.url, app), issuer.mint("x"), "file_search_query", query="anything")
        )
    assert "no embedding model is configured" in message


def test_chunks_overlap_and_respect_the_size() -> None:
    text = " ".join(f"word{n}" for n in range(1000))
    chunks = chunk_text(text, size=200, overlap=40)
    assert all(len(chunk) <= 200 for chunk in chunks)
    assert chunks[0].split()[-1] in chunks[1]
    assert chunks[-1].endswith("word999")
    assert chunk_text("   ") == []


async def test_a_database_outage_is_a_tool_error(settings_factory: Any, issuer: TestIssuer) -> None:
    dead = SecretStr(f"postgresql://jan@127.0.0.1:{free_port()}/jan")
    app = create_app(settings_factory(database_url=dead))
    with serve(app) as server:
        message = error_text(
            await call(McpServer(server.url, app), issuer.mint("x"), "file_search_query", query="anything")
        )
    assert "document store is unavailable" in message


async def test_indexing_reports_progress_to_a_caller_that_asks(
    mcp_server: McpServer, issuer: TestIssuer, upstream: FakeUpstream
) -> None:
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async with mcp_session(mcp_server.url, issuer.mint("indexer")) as session:
        result = await session.call_tool(
            "file_search_index",
            {"document_id": "progress-doc", "text": "Tides rise twice a day.", "collection": "progress"},
            progress_callback=on_progress,
        )
    assert payload(result)["status"] == "indexed"
    assert notes[0] == "file_search_index: started"
