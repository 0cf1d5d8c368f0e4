"""mcp-tools: `tools/call` round trips through MCP versus a bare FastAPI handler, and file-search latency.

Part 1, the cost of the MCP layer. Every arm does the same work: authenticate the caller's JWT (the
kit's `Authenticator`), run one `google_search` against the loopback SearXNG fake, and return the
normalised payload. The arms differ only in what carries the call:

- `bare`: a plain FastAPI route (`POST /v1/search`, the kit's app shell and `PrincipalDep`) called
  with httpx — the baseline;
- `mcp-jsonrpc`: `tools/call` as a plain JSON-RPC POST to `/v1/mcp` with httpx;
- `mcp-sdk`: `tools/call` through the official SDK client (`ClientSession.call_tool`, one session).

Calls are sequential (one in flight), arms interleaved in rounds after a warm-up.

Part 2, file-search query latency at 10k chunks: documents are indexed through the real
`file_search_index` tool until the user's collection holds at least 10 000 chunks (embeddings from
the FakeUpstream's `/v1/embeddings`, 384 dimensions),
then `file_search_query` is timed through the SDK client, interleaved with the bare SQL
nearest-neighbour scan over the same rows (the baseline: what the database alone costs).

Run: `.venv/bin/python -m bench.mcp_tools` (about a minute; everything on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from fastapi import FastAPI
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel, SecretStr
from sqlalchemy import text

from apps.common.auth.principal import PrincipalDep
from apps.common.db import create_engine
from apps.common.http import make_client
from apps.common.logs import configure_logging
from apps.common.migrations import upgrade_async
from apps.common.service import service_app
from apps.gateway.embedded import embedded_postgres
from apps.mcp_tools.main import create_app, search_engines
from apps.mcp_tools.services.search import SearchQuery, WebSearch
from apps.mcp_tools.settings import McpToolsSettings
from tests.harness.issuer import TestIssuer
from tests.harness.search import FakeSearch
from tests.harness.server import serve
from tests.harness.upstream import FakeUpstream

WARMUP = 100
ROUNDS = 8
PER_ROUND = 50
TARGET_CHUNKS = 10_000
PARAGRAPHS_PER_DOCUMENT = 800
QUERIES = 100
QUERY = "python programming language"
NEAREST = text(
    "select d.document_id, c.chunk_index, c.text, c.embedding <=> cast(:v as vector) as distance "
    "from chunks c join documents d on d.id = c.document_pk "
    "where c.user_id = :u and c.collection = 'bench' and c.model = 'fake-embedding' "
    "order by distance limit 5"
)


class SearchBody(BaseModel):
    q: str
    num: int = 10


def bare_app(settings: McpToolsSettings) -> FastAPI:
    """The baseline: the same search behind a plain route of the same framework and kit."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with make_client(timeout=settings.search_timeout_seconds) as http:
            app.state.search = WebSearch(search_engines(settings, http), settings.search_timeout_seconds)
            yield

    app = service_app(settings, title="bare", lifespan=lifespan)

    @app.post("/v1/search")
    async def search(body: SearchBody, principal: PrincipalDep) -> dict[str, Any]:
        del principal  # authenticated, as in the MCP arms
        answer = await app.state.search.search(SearchQuery(q=body.q, num=body.num))
        payload: dict[str, Any] = answer.payload()
        return payload

    return app


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "per_s": len(ordered) / sum(ordered),
    }


async def timed(call: Callable[[], Awaitable[None]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


@asynccontextmanager
async def sdk_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60.0)
        ) as http,
        streamable_http_client(f"{url}/v1/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def round_trips(mcp_url: str, bare_url: str, token: str) -> dict[str, list[float]]:
    auth = {"authorization": f"Bearer {token}"}
    rpc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "google_search", "arguments": {"q": QUERY, "num": 3}},
    }
    async with httpx.AsyncClient(headers=auth, timeout=60) as client, sdk_session(mcp_url, token) as session:

        async def bare() -> None:
            response = await client.post(f"{bare_url}/v1/search", json={"q": QUERY, "num": 3})
            assert response.status_code == 200 and response.json()["results"]

        async def jsonrpc() -> None:
            response = await client.post(
                f"{mcp_url}/v1/mcp", json=rpc, headers={"accept": "application/json, text/event-stream"}
            )
            assert response.json()["result"]["isError"] is False

        async def sdk() -> None:
            result = await session.call_tool("google_search", {"q": QUERY, "num": 3})
            assert not result.is_error

        arms = {"bare": bare, "mcp-jsonrpc": jsonrpc, "mcp-sdk": sdk}
        for call in arms.values():
            await timed(call, WARMUP)
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(ROUNDS):
            for name, call in arms.items():
                samples[name] += await timed(call, PER_ROUND)
    return samples


def corpus_text(rng: random.Random, vocabulary: list[str]) -> str:
    paragraphs = [" ".join(rng.choices(vocabulary, k=120)) + "." for _ in range(PARAGRAPHS_PER_DOCUMENT)]
    return "\n\n".join(paragraphs)


async def file_search(mcp_url: str, token: str, database_url: str) -> dict[str, Any]:
    rng = random.Random(7)
    stems = ("sol", "mar", "ven", "ter", "lun", "aqu", "pyr", "geo")
    vocabulary = [f"{stem}{n}" for stem in stems for n in range(250)]
    engine = create_engine(database_url, schema="mcp_tools")
    async with sdk_session(mcp_url, token) as session, engine.connect() as conn:
        started = time.perf_counter()
        chunks = number = 0
        while chunks < TARGET_CHUNKS:
            number += 1
            result = await session.call_tool(
                "file_search_index",
                {"document_id": f"doc-{number}", "text": corpus_text(rng, vocabulary), "collection": "bench"},
            )
            assert not result.is_error, result.content
            chunks += int((result.structured_content or {})["chunk_count"])
        index_seconds = time.perf_counter() - started
        queries = [" ".join(rng.choices(vocabulary, k=6)) for _ in range(QUERIES)]
        vector = (await conn.execute(text("select embedding::text from chunks limit 1"))).scalar_one()

        async def query() -> None:
            result = await session.call_tool(
                "file_search_query",
                {"query": queries[rng.randrange(QUERIES)], "collection": "bench", "top_k": 5},
            )
            assert not result.is_error and (result.structured_content or {})["count"] == 5

        async def scan() -> None:
            """The baseline: the same nearest-neighbour SQL over the same rows, no MCP, no embedding."""
            rows = (await conn.execute(NEAREST, {"v": vector, "u": "bench-user"})).all()
            assert len(rows) == 5

        arms = {"sql scan (baseline)": scan, "file_search_query": query}
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for call in arms.values():
            await timed(call, 10)
        for _ in range(QUERIES // 20):
            for name, call in arms.items():
                samples[name] += await timed(call, 20)
    await engine.dispose()
    return {"chunks": chunks, "documents": number, "index_seconds": index_seconds, "samples": samples}


def table(rows: dict[str, dict[str, float]]) -> None:
    print(f"{'arm':<22}{'p50 ms':>10}{'p99 ms':>10}{'calls/s':>10}")
    for name, row in rows.items():
        print(f"{name:<22}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['per_s']:>10.1f}")


async def run(stack: ExitStack) -> None:
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jan-bench-")))
    os.chmod(tmp, 0o755)
    database_url = stack.enter_context(embedded_postgres(tmp / "pg")).url
    await upgrade_async("apps.mcp_tools", database_url)
    issuer, search, upstream = TestIssuer(), FakeSearch(), FakeUpstream()
    issuer.url = stack.enter_context(serve(issuer.app)).url
    search.url = stack.enter_context(serve(search.app)).url
    upstream.url = stack.enter_context(serve(upstream.app)).url
    settings = McpToolsSettings(
        database_url=SecretStr(database_url),
        auth=issuer.auth_settings(),
        searxng_url=search.url,
        embeddings_url=upstream.base_url,
        embeddings_model="fake-embedding",
        mcp_providers_file=None,
        log_level="WARNING",
    )
    mcp_url = stack.enter_context(serve(create_app(settings))).url
    bare_url = stack.enter_context(serve(bare_app(settings))).url
    token = issuer.mint("bench-user", ttl_seconds=3600)

    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    print(f"part 1: sequential tools/call, {WARMUP} warm-up + {ROUNDS}x{PER_ROUND} calls/arm, interleaved")
    samples = await round_trips(mcp_url, bare_url, token)
    rows = {name: summary(values) for name, values in samples.items()}
    table(rows)
    for arm in ("mcp-jsonrpc", "mcp-sdk"):
        throughput = rows[arm]["per_s"] / rows["bare"]["per_s"]
        print(f"{arm} ÷ bare: {throughput:.2f}x throughput ({1 / throughput:.2f}x time per call)")

    print(f"\npart 2: file search over >= {TARGET_CHUNKS} chunks of one user, {QUERIES} queries, top_k=5")
    result = await file_search(mcp_url, token, database_url)
    chunks, seconds = result["chunks"], result["index_seconds"]
    print(f"indexed {chunks} chunks ({result['documents']} documents) in {seconds:.1f}s ", end="")
    print(f"({chunks / seconds:.0f} chunks/s, embeddings included)")
    search_rows = {name: summary(values) for name, values in result["samples"].items()}
    table(search_rows)
    ratio = search_rows["file_search_query"]["p50_ms"] / search_rows["sql scan (baseline)"]["p50_ms"]
    print(f"file_search_query ÷ sql scan: {ratio:.2f}x p50 (tool adds MCP, auth, query embedding)")


def main() -> None:
    configure_logging("WARNING", "console")
    with ExitStack() as stack:
        asyncio.run(run(stack))


if __name__ == "__main__":
    main()
