"""File search at scale: the HNSW path against the exact scan, at 10k / 100k (/ 1M) chunks of one user.

Vectors are synthetic (no embedding model runs): 384-dimension points drawn around 1000 random
centres with Gaussian noise, a mixture that clusters the way sentence embeddings do; uniform noise
would be the index's worst case and unlike any real corpus. Queries come from the same mixture and
are not stored points. Everything runs on a fresh embedded Postgres (pgserver, pgvector 0.6).

For each size, from empty tables at migration 0002:

1. bulk load: documents of 100 chunks by binary COPY (no vector index yet) -> rows/s;
2. migration 0003 builds the HNSW index over the existing rows -> build seconds and rows/s;
3. incremental indexing with the index in place (the `file_search_index` write: one INSERT per
   document of 100 chunks) -> rows/s;
4. queries through `nearest()` (the service's path: scope size, ef_search, the index walk, each
   on a fresh session as the tool does), and the exact scan on the same vectors -> p50/p99 and
   recall@5 of the approximate answer against the exact one; an ef_search sweep says what the
   knob buys;
5. a small collection (500 chunks, another user) in the same big table -> latency of the exact
   fallback, whose recall is 1 by construction.

Run: `.venv/bin/python -m bench.file_search [sizes...]` (default `10000 100000`; 100k takes a few
minutes on two busy cores, mostly the index build).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from alembic import command
from pgvector.asyncpg import register_vector
from sqlalchemy import text

from apps.common.db import create_engine, session_factory
from apps.common.migrations import alembic_config, upgrade
from apps.gateway.embedded import embedded_postgres
from apps.mcp_tools.services import nearest as nearest_module
from apps.mcp_tools.services.nearest import ANN_DIMENSIONS, Scope, ann_statement, exact_statement, nearest

MODEL = "synthetic-384"
CENTRES = 1000
NOISE = 0.6
PER_DOCUMENT = 100
QUERIES = 200
TOP_K = 5
INCREMENTAL = 2_000
SMALL = 500
SWEEP = (40, 64, 100, 200)
COLUMNS = ("user_id", "collection", "model", "chunk_index", "text", "embedding", "document_pk")


class Mixture:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(0.0, 1.0, (CENTRES, ANN_DIMENSIONS)).astype(np.float32)

    def draw(self, count: int) -> np.ndarray:
        picks = self.rng.integers(0, CENTRES, count)
        noise = self.rng.normal(0.0, NOISE, (count, ANN_DIMENSIONS)).astype(np.float32)
        result: np.ndarray = self.centres[picks] + noise
        return result


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def load(conn: Any, mixture: Mixture, user: str, count: int, first_document: int) -> float:
    """COPY `count` chunks of `user` in documents of PER_DOCUMENT; returns seconds."""
    started = time.perf_counter()
    for start in range(0, count, 10_000):
        size = min(10_000, count - start)
        documents = range(
            first_document + start // PER_DOCUMENT, first_document + (start + size) // PER_DOCUMENT
        )
        ids = await conn.fetch(
            "INSERT INTO documents (user_id, collection, document_id, source, model, tags, metadata, "
            "token_count, chunk_count) SELECT $1, 'bench', 'doc-' || n, 'text', $2, '{}', '{}', $3, $3 "
            "FROM unnest($4::int[]) AS n RETURNING id",
            user,
            MODEL,
            PER_DOCUMENT,
            list(documents),
        )
        vectors = mixture.draw(size)
        records = [
            (
                user,
                "bench",
                MODEL,
                i % PER_DOCUMENT,
                f"{user} chunk {start + i}",
                vectors[i],
                ids[i // PER_DOCUMENT][0],
            )
            for i in range(size)
        ]
        await conn.copy_records_to_table("chunks", records=records, columns=COLUMNS, schema_name="mcp_tools")
    return time.perf_counter() - started


async def incremental(conn: Any, mixture: Mixture, user: str, first_document: int) -> float:
    """INSERTs with the HNSW index maintained, one statement per document as the tool writes."""
    started = time.perf_counter()
    for number in range(INCREMENTAL // PER_DOCUMENT):
        document = await conn.fetchval(
            "INSERT INTO documents (user_id, collection, document_id, source, model, tags, metadata, "
            "token_count, chunk_count) VALUES ($1, 'bench', $2, 'text', $3, '{}', '{}', $4, $4) RETURNING id",
            user,
            f"inc-{first_document + number}",
            MODEL,
            PER_DOCUMENT,
        )
        vectors = mixture.draw(PER_DOCUMENT)
        await conn.executemany(
            "INSERT INTO chunks (user_id, collection, model, chunk_index, text, embedding, document_pk) "
            "VALUES ($1, 'bench', $2, $3, $4, $5, $6)",
            [(user, MODEL, i, f"{user} inc {number}.{i}", vectors[i], document) for i in range(PER_DOCUMENT)],
        )
    return time.perf_counter() - started


def queries_for(size: int) -> int:
    """Fewer probes at a million: each exact scan then takes about a second."""
    return QUERIES if size < 500_000 else QUERIES // 4


async def queries(url: str, mixture: Mixture, user: str, scale: int) -> dict[str, Any]:
    engine = create_engine(url, schema="mcp_tools")
    sessions = session_factory(engine)
    scope = Scope(user, "bench", MODEL)
    probes = [[float(v) for v in row] for row in mixture.draw(queries_for(scale))]
    timings: dict[str, list[float]] = {"round trip floor (SELECT 1)": [], "nearest": [], "exact": []}
    found: dict[str, int] = {"nearest": 0, **{f"ef={ef}": 0 for ef in SWEEP}}
    sweep_times: dict[str, list[float]] = {f"ef={ef}": [] for ef in SWEEP}
    for probe in probes[:10]:  # warm the caches and the pool
        async with sessions() as session:
            await nearest(session, scope, probe, TOP_K)
            await session.execute(exact_statement(scope, probe, TOP_K))
    for probe in probes:
        started = time.perf_counter()
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
        timings["round trip floor (SELECT 1)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        async with sessions() as session:
            rows = await nearest(session, scope, probe, TOP_K)
        timings["nearest"].append(time.perf_counter() - started)
        started = time.perf_counter()
        async with sessions() as session:
            exact = (await session.execute(exact_statement(scope, probe, TOP_K))).all()
        timings["exact"].append(time.perf_counter() - started)
        truth = {row.text for row in exact}
        found["nearest"] += len(truth & {row.text for row in rows})
        for ef in SWEEP:
            started = time.perf_counter()
            async with sessions() as session:
                await session.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
                swept = (await session.execute(ann_statement(scope, probe, TOP_K))).all()
            sweep_times[f"ef={ef}"].append(time.perf_counter() - started)
            found[f"ef={ef}"] += len(truth & {row.text for row in swept})
    await engine.dispose()
    timings.update(sweep_times)
    recall = {name: hits / (len(probes) * TOP_K) for name, hits in found.items()}
    recall["exact"] = 1.0
    recall["round trip floor (SELECT 1)"] = float("nan")
    return {"timings": timings, "recall": recall}


async def explain(url: str, mixture: Mixture, user: str) -> str:
    engine = create_engine(url, schema="mcp_tools")
    probe = [float(v) for v in mixture.draw(1)[0]]
    statement = ann_statement(Scope(user, "bench", MODEL), probe, TOP_K)
    async with engine.connect() as conn:
        compiled = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
        plan = (await conn.execute(text(f"EXPLAIN {compiled}"))).scalars().all()
    await engine.dispose()
    return "index walked" if any("hnsw" in line for line in plan) else "NOT walked: " + " / ".join(plan[:3])


async def one_size(url: str, size: int) -> None:
    mixture = Mixture(size)
    await asyncio.to_thread(upgrade, "apps.mcp_tools", url, "0002")
    conn = await asyncpg.connect(url, server_settings={"search_path": "mcp_tools,public"})
    await register_vector(conn)
    await conn.execute("TRUNCATE documents, chunks")
    load_s = await load(conn, mixture, "big", size, 0)
    await load(conn, mixture, "small", SMALL, 0)
    await conn.execute("ANALYZE documents; ANALYZE chunks")
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, "apps.mcp_tools", url, "head")
    build_s = time.perf_counter() - started
    inc_s = await incremental(conn, mixture, "big", size)
    await conn.execute("ANALYZE chunks")
    await conn.close()
    try:
        await report(url, mixture, size, load_s, build_s, inc_s)
    finally:
        await asyncio.to_thread(command.downgrade, alembic_config("apps.mcp_tools", url), "0002")


async def report(url: str, mixture: Mixture, size: int, load_s: float, build_s: float, inc_s: float) -> None:
    probes = queries_for(size)
    print(f"\n## {size:,} chunks of user 'big' (+{SMALL} of user 'small'), top_k={TOP_K}, {probes} queries")
    print(f"bulk load (COPY, no vector index):   {size / load_s:9,.0f} chunks/s ({load_s:.1f} s)")
    print(f"HNSW build (migration 0003):         {size / build_s:9,.0f} chunks/s ({build_s:.1f} s)")
    print(f"incremental insert, index kept:      {INCREMENTAL / inc_s:9,.0f} chunks/s ({INCREMENTAL} chunks)")
    print(f"planner on the approximate query:    {await explain(url, mixture, 'big')}")
    result = await queries(url, mixture, "big", size)
    small = await queries(url, mixture, "small", size)
    print(f"\n| path | p50 ms | p99 ms | recall@{TOP_K} |\n|---|---:|---:|---:|")
    for name, samples in result["timings"].items():
        p50, p99 = summary(samples)
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {result['recall'][name]:.3f} |")
    p50, p99 = summary(small["timings"]["nearest"])
    recall = small["recall"]["nearest"]
    print(f"| small collection ({SMALL}), nearest (exact) | {p50:.2f} | {p99:.2f} | {recall:.3f} |")


async def run(sizes: list[int]) -> None:
    print(
        f"# file search at scale: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}"
    )
    print(f"synthetic 384-d vectors ({CENTRES} Gaussian centres, noise {NOISE}); nearest(): EXACT_MAX=")
    print(
        f"{nearest_module.EXACT_MAX}, EF_MIN={nearest_module.EF_MIN}, EF_MAX={nearest_module.EF_MAX}, "
        f"OVERSAMPLE={nearest_module.OVERSAMPLE}; HNSW m=16, ef_construction=64, cosine"
    )
    with tempfile.TemporaryDirectory(prefix="jan-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with embedded_postgres(Path(tmp) / "data") as postgres:
            # The whole graph in memory at every size (the migration never lowers this).
            conn = await asyncpg.connect(postgres.url)
            await conn.execute("ALTER SYSTEM SET maintenance_work_mem = '2GB'")
            await conn.execute("SELECT pg_reload_conf()")
            await conn.close()
            for size in sizes:
                await one_size(postgres.url, size)


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [10_000, 100_000]
    asyncio.run(run(sizes))


if __name__ == "__main__":
    main()
