"""Tables of mcp-tools, all in the `mcp_tools` schema: the file-search vector store.

A `documents` row is one indexed document of one user in one collection (re-indexing the same
`document_id` replaces it); its text lives in `chunks`, each with a pgvector embedding. The
`embedding` column has no fixed dimension so any embedding model fits; every chunk records the
`model` that embedded it and queries only compare vectors of the current model.

Search ranks by cosine distance within the caller's user, collection and model: through the HNSW
index of migration 0003 (over 384-dimension vectors, typed by a cast) for large scopes, by the exact
scan over the btree scope index for small ones; `services/nearest.py` says how it chooses, from the
chunk count `collection_sizes` holds per scope. The HNSW index (an expression index) and the trigger
that keeps `collection_sizes` (migration 0004) live in the migrations only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from apps.common.db import new_metadata


class Embedding(Vector):
    """pgvector's column type, with its text written by orjson. pgvector's own bind step formats
    every float with `str()`: about 0.4 ms for one 384-dimension vector, a tenth of a whole file
    search query's time in this process; orjson writes the same `[x,y,...]` text in ~20 us."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:  # noqa: ARG002 - the same text for every dialect
        def process(value: Any) -> str | None:
            return None if value is None else orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()

        return process


class Base(DeclarativeBase):
    metadata = new_metadata()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("user_id", "collection", "document_id", name="uq_documents_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255))
    collection: Mapped[str] = mapped_column(String(128))
    document_id: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(128)), default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    token_count: Mapped[int] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_scope", "user_id", "collection", "model"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    document_pk: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    collection: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(255))
    chunk_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(Embedding())


class CollectionSize(Base):
    """The chunks of one user's collection under one model: the sum of its documents' `chunk_count`,
    written only by the trigger on `documents`."""

    __tablename__ = "collection_sizes"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    collection: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    chunks: Mapped[int] = mapped_column(BigInteger)
