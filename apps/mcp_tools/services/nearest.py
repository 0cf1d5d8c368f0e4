"""Nearest chunks of one user's collection: the HNSW index where it helps, the exact scan where it must.

The `embedding` column stays untyped so any model fits, but an HNSW index needs a fixed dimension:
migration 0003 builds one over `embedding::vector(384)` for rows whose vectors have 384 dimensions
(MiniLM and the other small models). A query reaches that index only by repeating the same cast
and the index's partial predicate, which is what `_ann_statement` does.

The bundled pgvector (0.6) filters *after* the graph walk: the index yields `hnsw.ef_search`
candidates from the whole table and the user/collection filter runs on those. A collection that is
a sliver of a big table would lose results, so:

- a scope of at most `EXACT_MAX` chunks (or another dimension) is ranked by the exact scan, which
  the btree scope index makes cheap at that size;
- a larger scope raises `ef_search` in proportion to the table's size over the scope's, so about
  `OVERSAMPLE` x top_k candidates are expected to survive the filter; past `EF_MAX` the exact scan
  is used instead (pgvector 0.8's iterative scans would lift that limit);
- if the approximate answer still comes back short, the exact scan answers.

The floor of `ef_search` grows with the scope (`ef_floor`): a bigger graph needs a wider walk for
the same recall. Measured by bench/file_search.py (m=16, ef_construction=64), with embedding-like
synthetic vectors (a low-dimensional topic mixture mapped into 384 dimensions): recall@5 at 100k
chunks is 0.978 / 0.991 / 0.999 at ef_search 64 / 100 / 200, at 1M 0.960 / 0.972 / 0.988.
Vectors that are isotropic noise in all 384 dimensions (unlike any embedding model's) are much
harder: 0.80-0.88 at 1M with 40-200.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import Float, Row, Select, cast, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from apps.mcp_tools.db import Chunk, Document

ANN_DIMENSIONS = 384
EXACT_MAX = 2000
EF_MIN = 64
# (largest scope, ef_search floor) in increasing order; past the last, EF_LARGE.
EF_FLOORS = ((20_000, EF_MIN), (200_000, 100))
EF_LARGE = 200
EF_MAX = 1000
OVERSAMPLE = 4


@dataclass(frozen=True)
class Scope:
    user_id: str
    collection: str
    model: str
    document_ids: tuple[str, ...] = ()


def _documents_filter(scope: Scope) -> list[Any]:
    found = [
        Document.user_id == scope.user_id,
        Document.collection == scope.collection,
        Document.model == scope.model,
    ]
    if scope.document_ids:
        found.append(Document.document_id.in_(scope.document_ids))
    return found


def _ranked(scope: Scope, distance: Any, top_k: int) -> Select[Any]:
    statement = (
        select(Document.document_id, Document.tags, Document.meta, Chunk.chunk_index, Chunk.text, distance)
        .join(Document, Document.id == Chunk.document_pk)
        .where(
            Chunk.user_id == scope.user_id, Chunk.collection == scope.collection, Chunk.model == scope.model
        )
        .order_by(distance)
        .limit(top_k)
    )
    if scope.document_ids:
        statement = statement.where(Document.document_id.in_(scope.document_ids))
    return statement


def exact_statement(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
    """Every chunk of the scope ranked; the untyped distance cannot match the HNSW index."""
    return _ranked(scope, Chunk.embedding.cosine_distance(vector), top_k)


def ann_statement(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
    """The same ranking written so the planner can walk the typed, partial HNSW index."""
    typed = cast(Chunk.embedding, Vector(ANN_DIMENSIONS))
    # A literal, not a bind parameter: the planner must prove the index's partial predicate.
    return _ranked(scope, typed.cosine_distance(vector), top_k).where(
        func.vector_dims(Chunk.embedding) == literal_column(str(ANN_DIMENSIONS))
    )


async def sizes(session: AsyncSession, scope: Scope) -> tuple[int, int]:
    """Chunks in scope (from the documents' own counts: a row per document, not per chunk) and the
    planner's estimate of the whole table's rows, in one round trip that also sets `ef_search` to
    its floor for this transaction (so the common case needs no round trip of its own)."""
    in_scope = select(func.coalesce(func.sum(Document.chunk_count), 0)).where(*_documents_filter(scope))
    table = text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('chunks')").columns(reltuples=Float)
    floor = func.set_config("hnsw.ef_search", str(EF_MIN), True)
    row = (await session.execute(select(in_scope.scalar_subquery(), table.scalar_subquery(), floor))).one()
    return int(row[0] or 0), int(row[1] or 0)


def ef_floor(scope: int) -> int:
    """The narrowest walk that keeps recall@5 near 0.99 for a scope of this many chunks."""
    for largest, ef in EF_FLOORS:
        if scope <= largest:
            return ef
    return EF_LARGE


def ef_search_for(top_k: int, scope: int, table: int) -> int | None:
    """The candidate count that leaves ~OVERSAMPLE x top_k in scope, or None when too many."""
    share = min(1.0, scope / max(table, scope, 1))
    wanted = math.ceil(OVERSAMPLE * top_k / share)
    if wanted > EF_MAX:
        return None
    return max(ef_floor(scope), wanted)


async def nearest(session: AsyncSession, scope: Scope, vector: list[float], top_k: int) -> list[Row[Any]]:
    """The `top_k` chunks of `scope` closest to `vector`, closest first (run inside a transaction)."""
    if len(vector) != ANN_DIMENSIONS:  # never in the index: the scope's size cannot change the path
        return list((await session.execute(exact_statement(scope, vector, top_k))).all())
    size, table = await sizes(session, scope)
    if size == 0:
        return []
    ef_search = ef_search_for(top_k, size, table) if size > EXACT_MAX else None
    if ef_search is not None:
        if ef_search > EF_MIN:
            await session.execute(select(func.set_config("hnsw.ef_search", str(ef_search), True)))
        rows = list((await session.execute(ann_statement(scope, vector, top_k))).all())
        if len(rows) >= min(top_k, size):
            return rows
    return list((await session.execute(exact_statement(scope, vector, top_k))).all())
