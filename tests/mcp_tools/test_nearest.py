"""The HNSW index and its exact fallback, on real Postgres with pgvector (synthetic 384-d vectors).

One user owns a large collection (enough chunks to take the approximate path); others own small
collections with the same name in the same table, which the index's post-filtering alone would miss.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Select, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apps.common.db import create_engine, session_factory, transaction
from apps.mcp_tools.db import Chunk, Document
from apps.mcp_tools.services import nearest as nearest_module
from apps.mcp_tools.services.nearest import (
    ANN_DIMENSIONS,
    EF_LARGE,
    EF_MIN,
    EXACT_MAX,
    Scope,
    ann_statement,
    ef_search_for,
    exact_statement,
    nearest,
    sizes,
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
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], collection: str, rng: random.Random
    ) -> None:
        self.sessions = sessions
        self.collection = collection
        self.rng = rng
        self.centres = centres(rng)

    def query(self) -> list[float]:
        return vectors(self.rng, 1, self.centres)[0]


@pytest.fixture(scope="module")
async def world(database_url: str) -> AsyncIterator[World]:
    engine = create_engine(database_url, schema="mcp_tools")
    sessions = session_factory(engine)
    rng = random.Random(15)
    built = World(sessions, f"ann-{uuid.uuid4().hex[:8]}", rng)
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
    assert INDEX_NAME in plan, plan
    assert INDEX_NAME not in exact_plan, exact_plan


async def test_approximate_results_stay_the_users_own_and_agree_with_the_exact_scan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fallbacks: list[Scope] = []

    def counted(scope: Scope, vector: list[float], top_k: int) -> Select[Any]:
        fallbacks.append(scope)
        return exact_statement(scope, vector, top_k)

    # Only nearest()'s own fallback is counted; `ranked(..., exact=True)` calls the imported name.
    monkeypatch.setattr(nearest_module, "exact_statement", counted)
    scope = Scope("big", world.collection, MODEL)
    found = total = 0
    for _ in range(20):
        vector = world.query()
        approximate = await ranked(world, scope, vector, 5, exact=False)
        exact = await ranked(world, scope, vector, 5, exact=True)
        assert len(approximate) == 5 and all(name.startswith("big ") for name in approximate)
        found += len(set(approximate) & set(exact))
        total += 5
    assert found / total >= 0.9
    assert fallbacks == []  # every answer came from the index walk, not from the exact scan


@pytest.mark.parametrize("user", ["small", "other"])
async def test_small_collections_get_every_row_in_exact_order(world: World, user: str) -> None:
    count = 40 if user == "small" else 300
    scope = Scope(user, world.collection, MODEL)
    vector = world.query()
    got = await ranked(world, scope, vector, count, exact=False)
    assert got == await ranked(world, scope, vector, count, exact=True)
    assert len(got) == count and all(name.startswith(f"{user} ") for name in got)


async def test_a_document_filter_inside_the_large_collection_is_still_complete(world: World) -> None:
    scope = Scope("big", world.collection, MODEL, document_ids=("doc-0",))
    vector = world.query()
    got = await ranked(world, scope, vector, 5, exact=False)
    assert got == await ranked(world, scope, vector, 5, exact=True)
    assert len(got) == 5 and all(int(name.split()[1]) < PER_DOCUMENT for name in got)


async def test_a_short_approximate_answer_falls_back_to_the_exact_scan(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ef_search at its floor over a scope the index would mostly filter away: the walk comes back
    # short, and the exact scan must answer in full.
    monkeypatch.setattr(nearest_module, "EXACT_MAX", 10)
    monkeypatch.setattr(nearest_module, "EF_MIN", 1)
    monkeypatch.setattr(nearest_module, "ef_search_for", lambda top_k, scope, table: 1)
    scope = Scope("small", world.collection, MODEL)
    vector = world.query()
    got = await ranked(world, scope, vector, 40, exact=False)
    assert got == await ranked(world, scope, vector, 40, exact=True)


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
    sized: list[Scope] = []

    async def counted(session: AsyncSession, scope: Scope) -> tuple[int, int]:
        sized.append(scope)
        return await sizes(session, scope)

    monkeypatch.setattr(nearest_module, "sizes", counted)
    rng = random.Random(8)
    await store(
        world.sessions, "eight", world.collection, [[rng.gauss(0, 1) for _ in range(8)] for _ in range(30)]
    )
    scope = Scope("eight", world.collection, MODEL)
    vector = [rng.gauss(0, 1) for _ in range(8)]
    got = await ranked(world, scope, vector, 30, exact=False)
    assert len(got) == 30 and got == await ranked(world, scope, vector, 30, exact=True)
    assert sized == []  # no round trip to size a scope whose vectors the index cannot hold
