"""Nearest chunks of one user's collection: the HNSW index where it helps, the exact scan where it must.

The `embedding` column stays untyped so any model fits, but an HNSW index needs a fixed dimension:
migration 0003 builds one over `embedding::vector(384)` for rows whose vectors have 384 dimensions
(MiniLM and the other small models). A query reaches that index only by repeating the same cast
and the index's partial predicate, which is what `ann_statement` does.

The bundled pgvector (0.6) filters *after* the graph walk: the index yields `hnsw.ef_search`
candidates from the whole table and the user/collection filter runs on those. A collection that is
a sliver of a big table would lose results, so:

- a scope of at most `EXACT_MAX` chunks (or another dimension) is ranked by the exact scan, which
  the btree scope index makes cheap at that size;
- a larger scope raises `ef_search` in proportion to the table's size over the scope's, so about
  `OVERSAMPLE` x top_k candidates are expected to survive the filter; past `EF_MAX` the exact scan
  is used instead (pgvector 0.8's iterative scans would lift that limit);
- if the approximate answer still comes back short, the exact scan answers.

All of that is one statement, one round trip (`planned_statement`): the scope's size, the choice of
path and of `ef_search`, and the ranking. The statements are built once per shape and reused with
new parameters, so a query costs neither their construction nor their cache key in Python.

The floor of `ef_search` grows with the scope (`ef_floor`): a bigger graph needs a wider walk for
the same recall. Measured by bench/file_search.py (m=16, ef_construction=64), with embedding-like
synthetic vectors (a low-dimensional topic mixture mapped into 384 dimensions): recall@5 at 100k
chunks is 0.978 / 0.991 / 0.999 at ef_search 64 / 100 / 200, at 1M 0.940 / 0.960 / 0.980 (50
probes; 0.976 at 150, 0.992 at 400).
Vectors that are isotropic noise in all 384 dimensions (unlike any embedding model's) are much
harder: 0.80-0.88 at 1M with 40-200.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Row,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from apps.mcp_tools.db import Chunk, CollectionSize, Document, Embedding

ANN_DIMENSIONS = 384
EXACT_MAX = 2000
EF_MIN = 64
# (largest scope, ef_search floor) in increasing order; past the last, EF_LARGE.
EF_FLOORS = ((20_000, EF_MIN), (200_000, 100))
EF_LARGE = 200
EF_MAX = 1000
OVERSAMPLE = 4
# Those constants, in that order: what the planned statement is written with.
Rule = tuple[int, int, tuple[tuple[int, int], ...], int, int, int]

# Core tables, not the ORM entities: the ORM's execution layer adds work per query and nothing here.
_documents = Document.__table__
_chunks = Chunk.__table__
_sizes = CollectionSize.__table__


@dataclass(frozen=True)
class Scope:
    user_id: str
    collection: str
    model: str
    document_ids: tuple[str, ...] = ()


def _top_k() -> Any:
    """Written into the SQL when it runs (a prepared statement per top_k): with its LIMIT known,
    Postgres settles on a generic plan for the planned statement instead of planning it again on
    every call (measured: about 0.6 ms of backend CPU per query)."""
    return bindparam("top_k", type_=Integer, literal_execute=True)


def _parameters(scope: Scope, vector: list[float], top_k: int) -> dict[str, Any]:
    found: dict[str, Any] = {
        "user_id": scope.user_id,
        "collection": scope.collection,
        "model": scope.model,
        "query_vector": vector,
        "top_k": top_k,
    }
    if scope.document_ids:
        found["document_ids"] = list(scope.document_ids)
    return found


def _documents_filter(filtered: bool) -> list[Any]:
    found = [
        _documents.c.user_id == bindparam("user_id", type_=String),
        _documents.c.collection == bindparam("collection", type_=String),
        _documents.c.model == bindparam("model", type_=String),
    ]
    if filtered:
        found.append(_documents.c.document_id.in_(bindparam("document_ids", expanding=True, type_=String)))
    return found


def _ranked(distance: Any, filtered: bool) -> Select[Any]:
    statement = (
        select(
            _documents.c.document_id.label("document_id"),
            _documents.c.tags.label("tags"),
            _documents.c.metadata.label("meta"),
            _chunks.c.chunk_index.label("chunk_index"),
            _chunks.c.text.label("text"),
            distance.label("distance"),
        )
        .join_from(_chunks, _documents, _documents.c.id == _chunks.c.document_pk)
        .where(
            _chunks.c.user_id == bindparam("user_id", type_=String),
            _chunks.c.collection == bindparam("collection", type_=String),
            _chunks.c.model == bindparam("model", type_=String),
        )
        .order_by(distance)
        .limit(_top_k())
    )
    if filtered:
        statement = statement.where(
            _documents.c.document_id.in_(bindparam("document_ids", expanding=True, type_=String))
        )
    return statement


def _query_vector() -> Any:
    """One named parameter, so a statement that ranks twice sends the vector once."""
    return bindparam("query_vector", type_=Embedding())


def _exact(filtered: bool) -> Select[Any]:
    return _ranked(_chunks.c.embedding.cosine_distance(_query_vector()), filtered)


def _ann(filtered: bool) -> Select[Any]:
    typed = cast(_chunks.c.embedding, Vector(ANN_DIMENSIONS))
    # A literal, not a bind parameter: the planner must prove the index's partial predicate.
    return _ranked(typed.cosine_distance(_query_vector()), filtered).where(
        func.vector_dims(_chunks.c.embedding) == literal_column(str(ANN_DIMENSIONS))
    )


def exact_statement(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
    """Every chunk of the scope ranked; the untyped distance cannot match the HNSW index."""
    return _exact(bool(scope.document_ids)).params(_parameters(scope, vector, top_k))


def ann_statement(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
    """The same ranking written so the planner can walk the typed, partial HNSW index."""
    return _ann(bool(scope.document_ids)).params(_parameters(scope, vector, top_k))


def ef_floor(scope: int) -> int:
    """The narrowest walk that keeps recall@5 near 0.99 for a scope of this many chunks."""
    for largest, ef in EF_FLOORS:
        if scope <= largest:
            return ef
    return EF_LARGE


def ef_search_for(top_k: int, scope: int, table: int) -> int | None:
    """The candidate count that leaves ~OVERSAMPLE x top_k in scope, or None when too many.
    In integers, so `_ef_search_sql` (the same rule in SQL) agrees to the unit."""
    rows = max(table, scope, 1)
    wanted = -(-OVERSAMPLE * top_k * rows // max(scope, 1))
    if wanted > EF_MAX:
        return None
    return max(ef_floor(scope), wanted)


def _n(value: int) -> Any:
    """An integer of the rule written into the SQL, not a parameter to send."""
    return literal_column(str(int(value)), BigInteger)


def _ef_search_sql(scope: Any, table: Any, top_k: Any, rule: Rule) -> Any:
    """`ef_search_for` in SQL over bigint sizes; NULL means the exact scan, as does a scope of at
    most EXACT_MAX chunks."""
    exact_max, _, floors, large, ef_max, oversample = rule
    rows = func.greatest(table, scope, _n(1))
    wanted = (_n(oversample) * top_k * rows + scope - _n(1)).self_group().op("/")(func.greatest(scope, _n(1)))
    floor = case(*((scope <= _n(largest), _n(ef)) for largest, ef in floors), else_=_n(large))
    chosen = and_(scope > _n(exact_max), wanted <= _n(ef_max))
    return case((chosen, func.greatest(floor, wanted)), else_=null())


def _rule() -> Rule:
    """The constants the planned statement is written with (tests change them)."""
    return EXACT_MAX, EF_MIN, EF_FLOORS, EF_LARGE, EF_MAX, OVERSAMPLE


def _scope_size(filtered: bool) -> Select[Any]:
    """The scope's chunk count: the collection's row of `collection_sizes` (one index probe however
    big the collection), or for a list of documents, the sum of theirs."""
    if filtered:
        return select(func.coalesce(func.sum(_documents.c.chunk_count), _n(0))).where(
            *_documents_filter(filtered)
        )
    return select(func.coalesce(func.max(_sizes.c.chunks), _n(0))).where(
        _sizes.c.user_id == bindparam("user_id", type_=String),
        _sizes.c.collection == bindparam("collection", type_=String),
        _sizes.c.model == bindparam("model", type_=String),
    )


@lru_cache(maxsize=32)
def _planned(filtered: bool, rule: Rule) -> Select[Any]:
    table_rows = text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('chunks')").columns(
        reltuples=Float
    )
    in_scope = _scope_size(filtered)
    sizes = (
        select(
            cast(in_scope.scalar_subquery(), BigInteger).label("scope"),
            cast(func.greatest(table_rows.scalar_subquery(), _n(0)), BigInteger).label("rows"),
        )
        .cte("sizes")
        .prefix_with("MATERIALIZED")  # counted once, however often the rule reads it
    )
    top_k = cast(_top_k(), BigInteger)
    choice = (
        select(sizes.c.scope, _ef_search_sql(sizes.c.scope, sizes.c.rows, top_k, rule).label("ef"))
        .cte("choice")
        .prefix_with("MATERIALIZED")
    )
    applied = func.set_config("hnsw.ef_search", cast(func.coalesce(choice.c.ef, _n(rule[1])), Text), True)
    plan = (
        select(choice.c.scope, choice.c.ef, applied.label("applied")).cte("plan").prefix_with("MATERIALIZED")
    )
    size = select(plan.c.scope).scalar_subquery().label("scope_size")
    walk = _ann(filtered).add_columns(size).where(select(plan.c.ef.is_not(None)).scalar_subquery())
    scan = _exact(filtered).add_columns(size).where(select(plan.c.ef.is_(None)).scalar_subquery())
    both = union_all(walk, scan).subquery("ranked")
    return select(*both.c).order_by(both.c.distance)


@lru_cache(maxsize=4)
def _exact_template(filtered: bool) -> Select[Any]:
    return _exact(filtered)


def planned_statement(scope: Scope) -> Select[Any]:
    """The whole query in one statement, to run with `_parameters`: size the scope, choose the
    path, set `ef_search`, rank.

    A materialised `plan` holds the scope's size (`_scope_size`), the walk's width or NULL for the exact
    scan, and applies that width with `set_config(..., true)`. Each branch of the union is gated on `plan`
    by a one-time filter, which Postgres evaluates before the branch's first row is pulled, so the width
    is in force when the index walk reads it (pgvector reads `hnsw.ef_search` at its first tuple), and
    only one branch ever scans. Each row carries the scope's size (`scope_size`), so the caller can
    tell a short walk from a small scope."""
    return _planned(bool(scope.document_ids), _rule())


async def nearest(session: AsyncSession, scope: Scope, vector: list[float], top_k: int) -> list[Row[Any]]:
    """The `top_k` chunks of `scope` closest to `vector`, closest first. One round trip, unless the
    walk came back short (or found nothing): then the exact scan answers. In a transaction or in
    autocommit alike: the walk's width is set for the transaction its own statement runs in."""
    parameters = _parameters(scope, vector, top_k)
    exact = _exact_template(bool(scope.document_ids))
    if len(vector) != ANN_DIMENSIONS:  # never in the index: the scope's size cannot change the path
        return list((await session.execute(exact, parameters)).all())
    rows = list((await session.execute(planned_statement(scope), parameters)).all())
    if rows and len(rows) >= min(top_k, rows[0].scope_size):
        return rows
    return list((await session.execute(exact, parameters)).all())
