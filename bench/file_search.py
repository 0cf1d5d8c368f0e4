"""File search at scale: the HNSW path against the exact scan, at 10k / 100k (/ 1M) chunks of one user.

Vectors are synthetic (no embedding model runs at a million chunks here), in one of two shapes:

- `topics` (the default), shaped like sentence embeddings: points of a low-dimensional latent space
  (`LATENT` dimensions, `TOPICS` Gaussian topics) mapped into 384 dimensions by a fixed random
  orthonormal map, normalised to unit length as MiniLM's are, plus a little isotropic noise.
  Sentence embeddings lie near such a low-dimensional set; `--calibrate` embeds real text with the
  bundled MiniLM and prints the same neighbourhood statistics (local intrinsic dimension, relative
  contrast, the gap between the 5th and 6th neighbour) for it and for both shapes, at equal count;
- `mixture`: 1000 random centres with full-dimensional Gaussian noise. Inside a cluster the points
  are isotropic 384-d noise, so at a million chunks each query's neighbours are nearly equidistant:
  the index's worst case, kept to show it, not a likeness of any corpus.

Queries come from the same generator and are not stored points. Everything runs on a fresh embedded
Postgres (pgserver, pgvector 0.6).

For each size, from empty tables at migration 0002:

1. bulk load: documents of 100 chunks by binary COPY (no vector index yet) -> rows/s;
2. migration 0003 builds the HNSW index over the existing rows -> build seconds and rows/s;
3. incremental indexing with the index in place (the `file_search_index` write: one INSERT per
   document of 100 chunks) -> rows/s;
4. queries through `nearest()` (the service's path: one statement sizing the scope, setting
   ef_search and walking the index, on a fresh session as the tool does), and the exact scan on
   the same vectors -> p50/p99 and recall@5 of the approximate answer against the exact one; an
   ef_search sweep says what the knob buys. Every probe is first walked at the widest ef_search,
   unmeasured, so no arm pays for bringing the pages into shared buffers for the arms after it.
   Each arm runs over all the probes before the next starts (the same vector twice in a row
   would find the walk's pages in the CPU's caches), and
   reports per call its client CPU, the serving backend's CPU and round trips (the backend's
   voluntary sleeps), beside a `SELECT 1` floor and the same with a pool without pre-ping;
5. a small collection (500 chunks, another user) in the same big table -> latency of the exact
   fallback, whose recall is 1 by construction.

Run: `.venv/bin/python -m bench.file_search [--vectors topics|mixture] [sizes...]` (default
`10000 100000`; 100k takes a few minutes on two busy cores, 1M most of an hour, mostly the index
build); `--calibrate` compares the shapes with real MiniLM vectors instead. By default everything
lives in a temporary directory, dropped at the end.

Building once, querying many times (the 1M build is the slow part; the query phase takes minutes):

- `--keep DIR` (one size): build into `DIR` (created; must hold no earlier build), run all five
  steps, then stop Postgres but keep its data, the index and `DIR/build.json` (size, vector shape,
  steps 1-3's figures);
- `--reuse DIR`: start Postgres on what `--keep` left in `DIR` and run only steps 4 and 5 with the
  code as it is now (size and shape come from `build.json`; steps 1-3's figures are reprinted
  from it, marked as such), then stop Postgres again, data kept. Queries are drawn from a
  generator of their own, so a `--keep` run and every `--reuse` of it ask the same questions.
  Postgres runs with its default shared_buffers (128MB) unless `--shared-buffers 4GB` (say)
  asks for room for the whole graph (about 2.4 GB at 1M), as a tuned server would have.

  nice -n 10 .venv/bin/python -m bench.file_search --keep /work/bench-data/fs-1m 1000000
  .venv/bin/python -m bench.file_search --reuse /work/bench-data/fs-1m [--shared-buffers 4GB]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from alembic import command
from pgvector.asyncpg import register_vector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from apps.common.db import async_url, create_engine, session_factory
from apps.common.migrations import alembic_config, upgrade
from apps.gateway.embedded import EmbeddedPostgres, embedded_postgres
from apps.mcp_tools.services import nearest as nearest_module
from apps.mcp_tools.services.nearest import ANN_DIMENSIONS, Scope, ann_statement, exact_statement, nearest

MODEL = "synthetic-384"
CENTRES = 1000
NOISE = 0.6
TOPICS = 1000
LATENT = 32
SPREAD = 1.0
AMBIENT = 0.01
PER_DOCUMENT = 100
QUERIES = 200
TOP_K = 5
INCREMENTAL = 2_000
SMALL = 500
SWEEP = (40, 64, 100, 150, 200, 400)
BUILD_FILE = "build.json"
COLUMNS = ("user_id", "collection", "model", "chunk_index", "text", "embedding", "document_pk")


class Mixture:
    """Isotropic Gaussian clusters: the worst case (see the module's docstring)."""

    label = f"mixture: {CENTRES} Gaussian centres, isotropic noise {NOISE} in all 384 dimensions"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(0.0, 1.0, (CENTRES, ANN_DIMENSIONS)).astype(np.float32)

    def draw(self, count: int) -> np.ndarray:
        picks = self.rng.integers(0, CENTRES, count)
        noise = self.rng.normal(0.0, NOISE, (count, ANN_DIMENSIONS)).astype(np.float32)
        result: np.ndarray = self.centres[picks] + noise
        return result


class Topics:
    """Embedding-like: a low-dimensional latent mixture mapped into 384 dimensions, unit length."""

    label = (
        f"topics: {TOPICS} Gaussian topics (spread {SPREAD}) in {LATENT} latent dimensions, "
        f"random orthonormal map to 384, unit length, isotropic noise {AMBIENT}"
    )

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.basis = np.linalg.qr(self.rng.normal(0.0, 1.0, (ANN_DIMENSIONS, LATENT)))[0].astype(np.float32)
        self.centres = self.rng.normal(0.0, 1.0, (TOPICS, LATENT)).astype(np.float32)

    def draw(self, count: int) -> np.ndarray:
        picks = self.rng.integers(0, TOPICS, count)
        latent = self.centres[picks] + self.rng.normal(0.0, SPREAD, (count, LATENT)).astype(np.float32)
        points = latent @ self.basis.T
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        noise = self.rng.normal(0.0, AMBIENT, (count, ANN_DIMENSIONS)).astype(np.float32)
        result: np.ndarray = points + noise
        return result


Vectors = Mixture | Topics
SHAPES: dict[str, type[Vectors]] = {"topics": Topics, "mixture": Mixture}


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def load(conn: Any, mixture: Vectors, user: str, count: int, first_document: int) -> float:
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


async def incremental(conn: Any, mixture: Vectors, user: str, first_document: int) -> float:
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


FLOOR = "round trip floor (SELECT 1)"
WARM = 5  # probes each arm runs before it is measured
GRAPH_WARM = 100  # more walks at the widest ef_search before any arm, none measured
BARE = ", pool without pre-ping"


Arm = Callable[[AsyncSession, list[float]], Awaitable[list[Any]]]


class Meter:
    """Per call: wall time, this process's CPU, and the serving backend's CPU and sleeps. The backend
    sleeps each time it waits for the client's next message, so its voluntary context switches count
    round trips (a Unix socket, nothing read from disk). One backend: the engine's pool holds one."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cost: dict[str, list[float]] = {}  # client CPU s, backend CPU s, round trips
        self.pid = 0

    def backend(self) -> tuple[float, int]:
        if not self.pid:
            return 0.0, 0
        runtime = int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[0]) / 1e9
        status = Path(f"/proc/{self.pid}/status").read_text()
        switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        return runtime, switches

    @asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[None]:
        server, sleeps = self.backend()
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server_after, sleeps_after = self.backend()
        self.wall.setdefault(name, []).append(wall)
        total = self.cost.setdefault(name, [0.0, 0.0, 0.0])
        total[0] += cpu
        total[1] += server_after - server
        total[2] += sleeps_after - sleeps


async def metered(url: str, pre_ping: bool) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], Meter]:
    """One pooled connection, as the app's engine (`create_engine`) makes it, or the same without pre-ping."""
    if pre_ping:
        engine = create_engine(url, schema="mcp_tools", pool_size=1, max_overflow=0)
    else:
        engine = create_async_engine(
            async_url(url),
            pool_size=1,
            max_overflow=0,
            connect_args={"server_settings": {"search_path": "mcp_tools,public"}},
        )
    meter = Meter()
    async with engine.connect() as conn:
        meter.pid = int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)
    return engine, session_factory(engine), meter


async def queries(url: str, mixture: Vectors, user: str, scale: int) -> dict[str, Any]:
    """Each arm over all the probes in turn, arm after arm: a walk repeated for the same vector finds
    its pages in the CPU's caches and shared buffers, and would look cheaper than any real query."""
    engine, sessions, meter = await metered(url, pre_ping=True)
    bare_engine, bare_sessions, bare = await metered(url, pre_ping=False)
    scope = Scope(user, "bench", MODEL)
    drawn = [[float(v) for v in row] for row in mixture.draw(GRAPH_WARM + WARM + queries_for(scale))]
    graph, warm, probes = (
        drawn[:GRAPH_WARM],
        drawn[GRAPH_WARM : GRAPH_WARM + WARM],
        drawn[GRAPH_WARM + WARM :],
    )

    async def floor(session: AsyncSession, _probe: list[float]) -> list[Any]:
        await session.execute(text("SELECT 1"))
        return []

    async def exact(session: AsyncSession, probe: list[float]) -> list[Any]:
        return list((await session.execute(exact_statement(scope, probe, TOP_K))).all())

    async def approximate(session: AsyncSession, probe: list[float]) -> list[Any]:
        # Outside a transaction block, as `FileSearch.query` runs it.
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return await nearest(session, scope, probe, TOP_K)

    def swept(ef: int) -> Arm:
        async def walk(session: AsyncSession, probe: list[float]) -> list[Any]:
            await session.execute(text(f"SET LOCAL hnsw.ef_search = {ef}"))
            return list((await session.execute(ann_statement(scope, probe, TOP_K))).all())

        return walk

    arms: list[tuple[str, Meter, async_sessionmaker[AsyncSession], Arm]] = [
        (FLOOR, meter, sessions, floor),
        ("nearest", meter, sessions, approximate),
        *((f"ef={ef}", meter, sessions, swept(ef)) for ef in SWEEP),
        (FLOOR + BARE, bare, bare_sessions, floor),
        ("nearest" + BARE, bare, bare_sessions, approximate),
        # Last: it reads the whole table through shared buffers, evicting the graph the others walk.
        ("exact", meter, sessions, exact),
    ]
    # Wide walks first, for the measured probes too: every page an arm's walk needs is then in
    # shared buffers before any arm is timed (with room for the graph, as on a server that has been
    # answering for a while). Without it the first arm to walk a probe read its pages in from the
    # OS's cache and each later arm found them there: at 1M the arm after the floor (`nearest`)
    # paid ~7 ms a query that the ef arms did not.
    for probe in graph + warm + probes:
        async with sessions() as session:
            await swept(max(SWEEP))(session, probe)
    answers: dict[str, list[set[str]]] = {}
    for name, metering, factory, arm in arms:
        for probe in warm:
            async with factory() as session:
                await arm(session, probe)
        found = []
        for probe in probes:
            async with metering(name), factory() as session:
                rows = await arm(session, probe)
            found.append({row.text for row in rows})
        answers[name] = found
    await engine.dispose()
    await bare_engine.dispose()
    truth = answers["exact"]
    recall = {
        name: sum(len(right & got) for right, got in zip(truth, found, strict=True)) / (len(probes) * TOP_K)
        for name, found in answers.items()
        if not name.startswith(FLOOR)
    }
    calls = len(probes)
    per_call = {name: [v / calls for v in cost] for name, cost in (meter.cost | bare.cost).items()}
    return {"timings": meter.wall | bare.wall, "recall": recall, "per_call": per_call}


async def explain(url: str, mixture: Vectors, user: str) -> str:
    engine = create_engine(url, schema="mcp_tools")
    probe = [float(v) for v in mixture.draw(1)[0]]
    statement = ann_statement(Scope(user, "bench", MODEL), probe, TOP_K)
    async with engine.connect() as conn:
        compiled = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True})
        plan = (await conn.execute(text(f"EXPLAIN {compiled}"))).scalars().all()
    await engine.dispose()
    return "index walked" if any("hnsw" in line for line in plan) else "NOT walked: " + " / ".join(plan[:3])


async def one_size(url: str, size: int, shape: type[Vectors], keep: Path | None = None) -> None:
    mixture = shape(size)
    await asyncio.to_thread(tables_only, url)
    conn = await asyncpg.connect(url, server_settings={"search_path": "mcp_tools,public"})
    await register_vector(conn)
    await conn.execute("TRUNCATE documents, chunks")
    load_s = await load(conn, mixture, "big", size, 0)
    await load(conn, mixture, "small", SMALL, 0)
    await conn.execute("ANALYZE documents; ANALYZE chunks")
    started = time.perf_counter()
    await asyncio.to_thread(upgrade, "apps.mcp_tools", url, "0003")
    build_s = time.perf_counter() - started
    await asyncio.to_thread(upgrade, "apps.mcp_tools", url, "head")  # 0004 counts what was loaded
    inc_s = await incremental(conn, mixture, "big", size)
    await conn.execute("ANALYZE chunks")
    await conn.close()
    if keep is not None:
        built = {"size": size, "vectors": shape.__name__.lower(), "load_s": load_s, "build_s": build_s}
        built |= {"incremental_s": inc_s, "loadavg_at_build": os.getloadavg(), "built_at": time.time()}
        (keep / BUILD_FILE).write_text(json.dumps(built, indent=2) + "\n")
        await report(url, mixture, size, load_s, build_s, inc_s)
        return
    try:
        await report(url, mixture, size, load_s, build_s, inc_s)
    finally:
        await asyncio.to_thread(command.downgrade, alembic_config("apps.mcp_tools", url), "0002")


def tables_only(url: str) -> None:
    """The tables at migration 0002, without the index or the counts a previous size left
    (TRUNCATE fires no row trigger, so the counts are rebuilt by 0004 after the load)."""
    upgrade("apps.mcp_tools", url, "0002")
    command.downgrade(alembic_config("apps.mcp_tools", url), "0002")


async def warm_files(url: str, data: Path) -> None:
    """Read the graph's and the table's files once, so no arm pays for the disk (the OS's cache
    then holds them, as it would on a server that has been answering queries)."""
    conn = await asyncpg.connect(url, server_settings={"search_path": "mcp_tools,public"})
    paths = [
        await conn.fetchval("SELECT pg_relation_filepath($1::regclass)", name)
        for name in (f"ix_chunks_embedding_hnsw_{ANN_DIMENSIONS}", "chunks", "documents")
    ]
    await conn.close()

    def read() -> None:
        for relative in paths:
            for segment in sorted((data / relative).parent.glob(Path(relative).name + "*")):
                with segment.open("rb") as handle:
                    while handle.read(1 << 24):
                        pass

    await asyncio.to_thread(read)


async def report(
    url: str,
    mixture: Vectors,
    size: int,
    load_s: float,
    build_s: float,
    inc_s: float,
    *,
    reused: bool = False,
) -> None:
    probes = queries_for(size)
    # Probes from a generator of their own: the same questions whether the data was drawn just now or not.
    mixture.rng = np.random.default_rng([size, 1])
    mark = f"  ({BUILD_FILE})" if reused else ""
    print(f"\n## {size:,} chunks of user 'big' (+{SMALL} of user 'small'), top_k={TOP_K}, {probes} queries")
    print(f"bulk load (COPY, no vector index):   {size / load_s:9,.0f} chunks/s ({load_s:.1f} s){mark}")
    print(f"HNSW build (migration 0003):         {size / build_s:9,.0f} chunks/s ({build_s:.1f} s){mark}")
    incremental_rate = INCREMENTAL / inc_s
    print(
        f"incremental insert, index kept:      {incremental_rate:9,.0f} chunks/s ({INCREMENTAL} chunks){mark}"
    )
    print(f"planner on the approximate query:    {await explain(url, mixture, 'big')}")
    result = await queries(url, mixture, "big", size)
    small = await queries(url, mixture, "small", size)
    print(
        f"\nper call: client = this process's CPU, backend = the serving Postgres process's CPU, "
        f"trips = its voluntary sleeps (round trips); load average {load_average()}"
    )
    print(f"| path | p50 ms | p99 ms | recall@{TOP_K} | client CPU ms | backend CPU ms | trips |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [(name, result, name) for name in result["timings"]]
    rows.append((f"small collection ({SMALL}), nearest (exact)", small, "nearest"))
    for label, measured, name in rows:
        p50, p99 = summary(measured["timings"][name])
        recall = measured["recall"].get(name)
        client, server, trips = measured["per_call"][name]
        shown = "" if recall is None else f"{recall:.3f}"
        costs = f"{client * 1000:.2f} | {server * 1000:.2f} | {trips:.1f}"
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {shown} | {costs} |")


def load_average() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def header(shape: type[Vectors]) -> None:
    print(
        f"# file search at scale: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load_average()}, Python {platform.python_version()}"
    )
    print(f"vectors: {shape.label}")
    print(
        f"nearest(): EXACT_MAX={nearest_module.EXACT_MAX}, EF_MIN={nearest_module.EF_MIN}, "
        f"EF_MAX={nearest_module.EF_MAX}, OVERSAMPLE={nearest_module.OVERSAMPLE}; "
        "HNSW m=16, ef_construction=64, cosine"
    )


async def build(data: Path, sizes: list[int], shape: type[Vectors], keep: Path | None) -> None:
    with embedded_postgres(data) as postgres:
        # The whole graph in memory at every size (the migration never lowers this).
        conn = await asyncpg.connect(postgres.url)
        await conn.execute("ALTER SYSTEM SET maintenance_work_mem = '2GB'")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.close()
        for size in sizes:
            await one_size(postgres.url, size, shape, keep)


async def run(sizes: list[int], shape: type[Vectors], keep: Path | None = None) -> None:
    header(shape)
    if keep is not None:
        await build(keep / "data", sizes, shape, keep)
        return
    with tempfile.TemporaryDirectory(prefix="jan-bench-") as tmp:
        os.chmod(tmp, 0o755)
        await build(Path(tmp) / "data", sizes, shape, None)


def prepare_keep(folder: Path) -> None:
    if (folder / BUILD_FILE).exists():
        raise SystemExit(f"{folder} already holds a build: --reuse it, or remove it first")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)  # pgserver's own user (when run as root) must reach the data folder


def read_build(folder: Path) -> dict[str, Any]:
    try:
        built: dict[str, Any] = json.loads((folder / BUILD_FILE).read_text())
    except FileNotFoundError:
        raise SystemExit(
            f"no {BUILD_FILE} in {folder}: build there first with --keep {folder} SIZE"
        ) from None
    return built


async def shared_buffers(postgres: EmbeddedPostgres, size: str | None) -> str:
    """Postgres's default unless `size` is given, applied by a restart; returns what is in force."""
    conn = await asyncpg.connect(postgres.url)
    if size is None:
        await conn.execute("ALTER SYSTEM RESET shared_buffers")
    else:
        await conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
    await conn.close()
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)
    conn = await asyncpg.connect(postgres.url)
    found = str(await conn.fetchval("SHOW shared_buffers"))
    await conn.close()
    return found


async def reuse(folder: Path, built: dict[str, Any], buffers: str | None) -> None:
    """Steps 4 and 5 only, on what `--keep` built in `folder`."""
    shape = SHAPES[built["vectors"]]
    header(shape)
    load1 = " ".join(f"{v:.1f}" for v in built["loadavg_at_build"])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(built["built_at"]))
    print(f"reusing the build in {folder} (built {when}, load average then {load1})")
    with embedded_postgres(folder / "data") as postgres:
        # A build kept before a later migration gets it now (0004's counts: one aggregate).
        await asyncio.to_thread(upgrade, "apps.mcp_tools", postgres.url, "head")
        print(f"shared_buffers: {await shared_buffers(postgres, buffers)}")
        await warm_files(postgres.url, folder / "data")
        size = built["size"]
        figures = built["load_s"], built["build_s"], built["incremental_s"]
        await report(postgres.url, shape(size), size, *figures, reused=True)


def neighbourhood(points: np.ndarray, probes: int = 500, k: int = 20) -> tuple[float, float, float]:
    """Median local intrinsic dimension (MLE over k neighbours), relative contrast (mean distance over
    the nearest) and relative gap between the 5th and 6th neighbour, by cosine distance, for
    `probes` points against all the others."""
    probes = min(probes, len(points))
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    distances = 1.0 - unit[:probes] @ unit.T
    distances[np.arange(probes), np.arange(probes)] = np.inf
    ordered = np.sqrt(np.maximum(np.sort(distances, axis=1)[:, :k], 1e-12))
    lid = -1.0 / np.mean(np.log(ordered[:, :-1] / ordered[:, -1:]), axis=1)
    finite = np.where(np.isinf(distances), np.nan, distances)
    contrast = np.nanmean(np.sqrt(np.maximum(finite, 0)), axis=1) / ordered[:, 0]
    gap = (ordered[:, 5] - ordered[:, 4]) / ordered[:, 4]
    return float(np.median(lid)), float(np.median(contrast)), float(np.median(gap))


def docstrings(count: int) -> list[str]:
    """First paragraphs of the standard library's docstrings: real prose about many topics."""
    import ast

    found: dict[str, None] = {}
    for path in sorted((Path(sys.base_prefix) / "lib").glob("python3*/**/*.py")):
        if "test" in path.parts[-2] or len(found) >= count:
            continue
        try:
            tree = ast.parse(path.read_text(errors="ignore"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                paragraph = " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())
                if len(paragraph) > 40:
                    found[paragraph[:400]] = None
    return sorted(list(found)[:count], key=len)


def calibrate(count: int) -> None:
    from apps.mcp_tools.services.embeddings import bundled_model_dir
    from apps.mcp_tools.services.minilm import MiniLM

    folder = bundled_model_dir()
    if folder is None:
        raise SystemExit("the bundled MiniLM is not installed")
    texts = docstrings(count)
    started = time.perf_counter()
    real = MiniLM(folder).encode(texts)
    took = time.perf_counter() - started
    print(f"# calibration: {len(texts)} standard-library docstrings through MiniLM ({took:.0f} s)")
    print("| vectors | count | local intrinsic dim | relative contrast | 5th-6th gap |")
    print("|---|---:|---:|---:|---:|")
    rows: list[tuple[str, np.ndarray]] = [("MiniLM, real text", real)]
    for name, shape in SHAPES.items():
        rows += [(name, shape(1).draw(len(texts))), (name, shape(1).draw(20 * len(texts)))]
    for name, points in rows:
        lid, contrast, gap = neighbourhood(points)
        print(f"| {name} | {len(points):,} | {lid:.1f} | {contrast:.2f} | {gap:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--vectors", choices=sorted(SHAPES), default="topics")
    parser.add_argument("--calibrate", type=int, metavar="TEXTS", help="compare the shapes with MiniLM")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="build one size into DIR and keep it")
    parser.add_argument("--reuse", type=Path, metavar="DIR", help="only query what --keep built in DIR")
    parser.add_argument(
        "--shared-buffers",
        metavar="SIZE",
        help="with --reuse: Postgres's shared_buffers for the queries, e.g. 4GB (default: Postgres's own)",
    )
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.calibrate)
    elif args.reuse:
        if args.keep or args.sizes != parser.get_default("sizes"):
            parser.error("--reuse takes no sizes and no --keep: the build decides them")
        if args.shared_buffers and not re.fullmatch(r"[0-9]+(kB|MB|GB)", args.shared_buffers):
            parser.error("--shared-buffers takes a size such as 512MB or 4GB")
        asyncio.run(reuse(args.reuse, read_build(args.reuse), args.shared_buffers))
    elif args.shared_buffers:
        parser.error("--shared-buffers goes with --reuse")
    elif args.keep and len(args.sizes) != 1:
        parser.error("--keep builds exactly one size")
    else:
        if args.keep:
            prepare_keep(args.keep)
        asyncio.run(run(args.sizes, SHAPES[args.vectors], args.keep))


if __name__ == "__main__":
    main()
