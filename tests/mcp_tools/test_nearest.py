"""The HNSW index and its exact fallback, on real Postgres with pgvector (synthetic 384-d vectors).

One user owns a large collection (enough chunks to take the approximate path); others own small
collections with the same name in the same table, which the index's post-filtering alone would miss.
Every path is one statement unless the walk comes back short: counted at the engine's cursor.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Select, event, insert, literal, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.common.db import create_engine, session_factory, transaction
from apps.mcp_tools.db import Chunk, Document
from apps.mcp_tools.services import nearest as nearest_module
from apps.mcp_tools.services.nearest import (
    ANN_DIMENSIONS,
    EF_LARGE,
    EF_MIN,
    EXACT_MAX,
    Scope,
    _ef_search_sql,
    _parameters,
    _rule,
    ann_statement,
    ef_search_for,
    exact_statement,
    nearest,
    planned_statement,
)

MODEL = "synthetic-384"
BIG = EXACT_MAX + 1500
PER_DOCUMENT = 100
INDEX_NAME = f"ix_chunks_embedding_hnsw_{ANN_DIMENSIONS}"


def vectors(rng: random.Random, count: int, centres: list[list[float]]) -> list[list[float]]:
    """Points around a few centres: clustered like real embeddings, not uniform noise."""
    out = []
    for _ in range(count):
        centre = rng.choice(centres)
        out.append([c + rng.gauss(0.0, 0.35) for c in centre])
    return out


def centres(rng: random.Random, count: int = 12) -> list[list[float]]:
    return [[rng.gauss(0.0, 1.0) for _ in range(ANN_DIMENSIONS)] for _ in range(count)]


async def store(
    sessions: async_sessionmaker[AsyncSession], user: str, collection: str, embeddings: list[list[float]]
) -> None:
    async with transaction(sessions) as session:
        for start in range(0, len(embeddings), PER_DOCUMENT):
            part = embeddings[start : start + PER_DOCUMENT]
            document_pk = await session.scalar(
                insert(Document)
                .values(
                    user_id=user,
                    collection=collection,
                    document_id=f"doc-{start}",
                    source="text",
                    model=MODEL,
                    tags=[],
                    meta={},
                    token_count=len(part),
                    chunk_count=len(part),
                )
                .returning(Document.id)
            )
            await session.execute(
                insert(Chunk),
                [
                    {
                        "document_pk": document_pk,
                        "user_id": user,
                        "collection": collection,
                        "model": MODEL,
                        "chunk_index": index,
                        "text": f"{user} {start + index}",
                        "embedding": vector,
                    }
                    for index, vector in enumerate(part)
                ],
            )


class World:
    def __init__(self, engine: AsyncEngine, collection: str, rng: random.Random) -> None:
        self.sessions = session_factory(engine)
        self.collection = collection
        self.rng = rng
        self.centres = centres(rng)
        self.statements: list[str] = []  # every statement the engine sends, in order

        def sent(*args: Any) -> None:
            self.statements.append(args[2])

        event.listen(engine.sync_engine, "before_cursor_execute", sent)

    def query(self) -> list[float]:
        return vectors(self.rng, 1, self.centres)[0]

    def count(self) -> int:
        """Statements sent since the last call."""
        sent = len(self.statements)
        self.statements.clear()
        return sent


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url, schema="mcp_tools")
    sessions = session_factory(engine)
    rng = random.Random(15)
    built = World(engine, f"ann-{uuid.uuid4().hex[:8]}", rng)
    await store(sessions, "big", built.collection, vectors(rng, BIG, built.centres))
    await store(sessions, "small", built.collection, vectors(rng, 40, built.centres))
    await store(sessions, "other", built.collection, vectors(rng, 300, built.centres))
    async with engine.connect() as connection:
        await connection.execute(text("ANALYZE chunks"))
        await connection.execute(text("ANALYZE documents"))
        await connection.commit()
    yield built
    await engine.dispose()


async def ranked(world: World, scope: Scope, vector: list[float], top_k: int, *, exact: bool) -> list[str]:
    async with world.sessions() as session:
        if exact:
            rows = (await session.execute(exact_statement(scope, vector, top_k))).all()
        else:
            world.count()
            rows = await nearest(session, scope, vector, top_k)
    return [row.text for row in rows]


async def test_the_large_collection_walks_the_hnsw_index(world: World) -> None:
    scope = Scope("big", world.collection, MODEL)
    async with world.sessions() as session:
        await session.execute(text("SET LOCAL hnsw.ef_search = 64"))
        plan = "\n".join(
            (await session.execute(text("EXPLAIN " + _sql(ann_statement(scope, world.query(), 5))))).scalars()
        )
        exact_plan = "\n".join(
            (
                await session.execute(text("EXPLAIN " + _sql(exact_statement(scope, world.query(), 5))))
            ).scalars()
        )
        planned = "\n".join(
            (await session.execute(text("EXPLAIN " + _sql(_bound(scope, world.query(), 5))))).scalars()
        )
    assert INDEX_NAME in plan, plan
    assert INDEX_NAME not in exact_plan, exact_plan
    assert INDEX_NAME in planned, planned  # the one-statement form still walks the index


def _bound(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
    return planned_statement(scope).params(_parameters(scope, vector, top_k))


async def test_one_statement_sets_the_walks_width_before_it_walks(world: World) -> None:
    # pgvector 0.6 yields at most ef_search candidates: with the session's width at 1, twenty rows
    # can only come back if the statement's own set_config ran before the index walk began.
    scope = Scope("big", world.collection, MODEL)
    async with world.sessions() as session:
        await session.execute(text("SET LOCAL hnsw.ef_search = 1"))
        rows = (await session.execute(_bound(scope, world.query(), 20))).all()
        width = (await session.execute(text("SHOW hnsw.ef_search"))).scalar_one()
        table = (
            await session.execute(
                text("SELECT reltuples::bigint FROM pg_class WHERE oid = 'chunks'::regclass")
            )
        ).scalar_one()
    assert len(rows) == 20 and all(row.text.startswith("big ") for row in rows)
    assert {row.scope_size for row in rows} == {BIG}
    assert int(width) == ef_search_for(20, BIG, table)


async def test_approximate_results_stay_the_users_own_and_agree_with_the_exact_scan(world: World) -> None:
    scope = Scope("big", world.collection, MODEL)
    found = total = 0
    for _ in range(20):
        vector = world.query()
        approximate = await ranked(world, scope, vector, 5, exact=False)
        # One statement: no round trip to size the scope or set the width, no exact fallback.
        assert world.count() == 1
        exact = await ranked(world, scope, vector, 5, exact=True)
        assert len(approximate) == 5 and all(name.startswith("big ") for name in approximate)
        found += len(set(approximate) & set(exact))
        total += 5
    assert found / total >= 0.9


@pytest.mark.parametrize("user", ["small", "other"])
async def test_small_collections_get_every_row_in_exact_order(world: World, user: str) -> None:
    count = 40 if user == "small" else 300
    scope = Scope(user, world.collection, MODEL)
    vector = world.query()
    got = await ranked(world, scope, vector, count, exact=False)
    assert world.count() == 1  # the exact branch of the same single statement
    assert got == await ranked(world, scope, vector, count, exact=True)
    assert len(got) == count and all(name.startswith(f"{user} ") for name in got)


async def test_an_empty_scope_is_an_empty_answer(world: World) -> None:
    assert await ranked(world, Scope("nobody", world.collection, MODEL), world.query(), 5, exact=False) == []


async def test_a_document_filter_inside_the_large_collection_is_still_complete(world: World) -> None:
    scope = Scope("big", world.collection, MODEL, document_ids=("doc-0",))
    vector = world.query()
    got = await ranked(world, scope, vector, 5, exact=False)
    assert world.count() == 1
    assert got == await ranked(world, scope, vector, 5, exact=True)
    assert len(got) == 5 and all(int(name.split()[1]) < PER_DOCUMENT for name in got)


async def test_a_short_approximate_answer_falls_back_to_the_exact_scan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A walk 100 candidates wide over a scope of 300 chunks in about 3,800: some of them come back,
    # fewer than 40, and the exact scan must answer in full. (Sorting off: the planner would rather
    # rank 300 rows by the btree than walk the graph for them.)
    monkeypatch.setattr(nearest_module, "EXACT_MAX", 10)
    monkeypatch.setattr(nearest_module, "EF_FLOORS", ((10**9, 100),))
    monkeypatch.setattr(nearest_module, "OVERSAMPLE", 0)
    scope = Scope("other", world.collection, MODEL)
    vector = world.query()
    async with world.sessions() as session:
        await session.execute(text("SET LOCAL enable_sort = off"))
        world.count()
        got = [row.text for row in await nearest(session, scope, vector, 40)]
    assert world.count() == 2  # the short walk, then the exact scan
    assert got == await ranked(world, scope, vector, 40, exact=True)


async def test_the_rule_in_sql_agrees_with_ef_search_for(world: World) -> None:
    cases = [
        (top_k, scope, table)
        for top_k in (1, 5, 20)
        for scope in (0, 1, EXACT_MAX, EXACT_MAX + 1, 7_777, 20_000, 20_001, 150_000, 200_001, 999_999)
        for table in (-1, 0, 3_000, 100_000, 1_000_000, 10_000_000)
    ]
    async with world.sessions() as session:
        for top_k, scope, table in cases:
            expression = _ef_search_sql(literal(scope), literal(table), literal(top_k), _rule())
            got = (await session.execute(select(expression))).scalar_one()
            expected = None if scope <= EXACT_MAX else ef_search_for(top_k, scope, max(table, 0))
            assert got == expected, (top_k, scope, table)


def test_ef_search_grows_with_the_tables_share_and_gives_up_past_its_ceiling() -> None:
    assert ef_search_for(5, 10_000, 10_000) == EF_MIN
    assert ef_search_for(5, 100_000, 1_000_000) == 200
    assert ef_search_for(5, 20_000, 1_000_000) == 1000
    assert ef_search_for(5, 10_000, 1_000_000) is None


def test_a_bigger_scope_walks_wider_for_the_same_recall() -> None:
    assert [ef_search_for(5, n, n) for n in (5_000, 20_000, 50_000, 200_000, 1_000_000)] == [
        EF_MIN,
        EF_MIN,
        100,
        100,
        EF_LARGE,
    ]


def _sql(statement: Select[Any]) -> str:
    compiled = statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})  # type: ignore[no-untyped-call]
    return str(compiled)


async def test_vectors_of_another_dimension_are_stored_and_ranked_exactly(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside the partial index (its cast would refuse them) and never sent down the approximate path.
    monkeypatch.setattr(nearest_module, "EXACT_MAX", 0)
    rng = random.Random(8)
    await store(
        world.sessions, "eight", world.collection, [[rng.gauss(0, 1) for _ in range(8)] for _ in range(30)]
    )
    scope = Scope("eight", world.collection, MODEL)
    vector = [rng.gauss(0, 1) for _ in range(8)]
    got = await ranked(world, scope, vector, 30, exact=False)
    assert world.count() == 1  # the exact scan alone: nothing to size for vectors the index cannot hold
    assert len(got) == 30 and got == await ranked(world, scope, vector, 30, exact=True)


async def _sizes_and_sums(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> tuple[dict[Any, int], ...]:
    async with sessions() as session:
        kept = await session.execute(
            text("SELECT collection, model, chunks FROM collection_sizes WHERE user_id = :u AND chunks <> 0"),
            {"u": user},
        )
        summed = await session.execute(
            text(
                "SELECT collection, model, sum(chunk_count) FROM documents WHERE user_id = :u "
                "GROUP BY collection, model"
            ),
            {"u": user},
        )
        return {(c, m): n for c, m, n in kept.all()}, {(c, m): n for c, m, n in summed.all()}


async def test_collection_sizes_follow_every_write_to_documents(database_url: str) -> None:
    """The count the planner sizes a scope by is the documents' own sum after any write to them,
    from concurrent writers to one collection too (the trigger of migration 0004)."""
    engine = create_engine(database_url, schema="mcp_tools")
    sessions = session_factory(engine)
    user = f"sizes-{uuid.uuid4().hex[:8]}"

    async def add(collection: str, document_id: str, chunks: int) -> None:
        async with transaction(sessions) as session:
            await session.execute(
                insert(Document).values(
                    user_id=user,
                    collection=collection,
                    document_id=document_id,
                    source="text",
                    model=MODEL,
                    tags=[],
                    meta={},
                    token_count=chunks,
                    chunk_count=chunks,
                )
            )

    async def change(statement: str) -> None:
        async with transaction(sessions) as session:
            await session.execute(text(statement), {"u": user})

    try:
        await asyncio.gather(*(add("a", f"doc-{n}", n + 1) for n in range(8)))
        await add("b", "doc-0", 5)
        kept, summed = await _sizes_and_sums(sessions, user)
        assert kept == summed == {("a", MODEL): 36, ("b", MODEL): 5}
        await change("UPDATE documents SET chunk_count = 10 WHERE user_id = :u AND document_id = 'doc-7'")
        await change("UPDATE documents SET collection = 'b' WHERE user_id = :u AND document_id = 'doc-1'")
        await change("UPDATE documents SET model = 'other' WHERE user_id = :u AND document_id = 'doc-2'")
        await change("DELETE FROM documents WHERE user_id = :u AND document_id = 'doc-0'")  # in a and b
        kept, summed = await _sizes_and_sums(sessions, user)
        assert kept == summed == {("a", MODEL): 32, ("b", MODEL): 2, ("a", "other"): 3}
        await change("DELETE FROM documents WHERE user_id = :u")
        assert await _sizes_and_sums(sessions, user) == ({}, {})
    finally:
        await engine.dispose()
