"""Where the time of a response goes: bench/responses_loop.py's `ours` arm, with every part timed.

The same loopback setup as `bench.responses_loop` (fake model and conversations, fake mcp-tools,
embedded Postgres, response-api in this process). Each request is one sample; while it runs, the
methods response-api spends its waiting time in are wrapped with timers (bench only: nothing in the
product is changed), and Python's garbage collector reports every collection through
`gc.callbacks`. Spans:

- `conversation append`: the HTTP call to llm-api's conversation route (it also creates a
  response's new conversation);
- `model round`: one streamed chat completion, request to last event;
- `mcp open` / `mcp close`: entering and leaving the response's MCP session; `mcp call`: one
  `tools/call`;
- `db insert`: the response row's write (commit included);
- `final writes`: the response's ending, from its last event to its acknowledgement: the append,
  then the insert (both are within it, so 'other' leaves them out: they are not counted twice);
- `gc genN (cpu)`: CPU time of the collections that ran while the request was in flight (any
  thread: there is one GIL);
- `other`: the client's wall time minus all of the above (routing, auth, validation, serialising,
  the client itself, waiting for a core);
- `cpu: response-api thread` / `cpu: whole process`: CPU time (not wall) of the thread running
  response-api's event loop, and of this whole process (fakes and client included), per request.
  On a machine loaded by others, wall times mostly measure the wait for a core; CPU time does not.

For each script it prints p50/p99 per span and, for the slowest 5% of requests, what each span
cost on average there against the median request: the columns that grow are the tail.

Run: `.venv/bin/python -m bench.responses_trace [--samples N] [--rounds R...] [--no-freeze]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from apps.common import heap
from apps.response_api.services import conversations, ending, llm, mcp, store
from bench.responses_loop import loopback, p, script
from tests.harness.server import ServerThread
from tests.harness.upstream import FakeUpstream

WARMUP = 10
WITHIN_FINAL_WRITES = {"conversation append", "db insert"}
Sample = dict[str, float]
current: Sample = {}


def add(name: str, seconds: float) -> None:
    current[name] = current.get(name, 0.0) + seconds * 1000


def timed(cls: Any, attribute: str, name: str) -> None:
    original = getattr(cls, attribute)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            add(name, time.perf_counter() - started)

    setattr(cls, attribute, wrapper)


def instrument() -> None:
    timed(conversations.Conversations, "append", "conversation append")
    timed(store.ResponseStore, "insert", "db insert")
    timed(ending.ResponseWriter, "_persist", "final writes")
    timed(mcp.McpSession, "call", "mcp call")
    timed(mcp.McpSession, "list_tools", "mcp list")

    original_stream = llm.LlmClient.stream

    async def stream(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            async for event in original_stream(self, *args, **kwargs):
                yield event
        finally:
            add("model round", time.perf_counter() - started)

    llm.LlmClient.stream = stream  # type: ignore[method-assign]

    original_session = mcp.McpConnector.session

    @asynccontextmanager
    async def session(self: Any, headers: dict[str, str]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        async with original_session(self, headers) as opened:
            add("mcp open", time.perf_counter() - started)
            try:
                yield opened
            finally:
                closing = time.perf_counter()
        add("mcp close", time.perf_counter() - closing)

    mcp.McpConnector.session = session  # type: ignore[method-assign]

    collecting: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        # CPU time of the collecting thread: a collection runs to its end in the thread that
        # triggered it, and its CPU cost does not depend on how loaded the machine is.
        if phase == "start":
            collecting["t"] = time.thread_time()
        elif "t" in collecting:
            add(f"gc gen{info['generation']} (cpu)", time.thread_time() - collecting.pop("t"))

    gc.callbacks.append(on_gc)


async def measure(
    api: ServerThread, token: str, upstream: FakeUpstream, rounds: tuple[int, ...], samples: int
) -> None:
    global current
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": "fake-model", "input": "bench"})
    results: dict[int, list[Sample]] = defaultdict(list)
    assert api.thread.ident is not None
    api_clock = time.pthread_getcpuclockid(api.thread.ident)
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as client:
        for sample in range(WARMUP + samples):
            for r in rounds:
                upstream.enqueue(*script(r))
                current = {}
                cpu_started, api_started = time.process_time(), time.clock_gettime(api_clock)
                started = time.perf_counter()
                reply = await client.post("/v1/responses", content=body)
                total = (time.perf_counter() - started) * 1000
                api_cpu = (time.clock_gettime(api_clock) - api_started) * 1000
                process_cpu = (time.process_time() - cpu_started) * 1000
                if reply.status_code != 200 or reply.json()["status"] != "completed":
                    raise RuntimeError(f"unexpected response: {reply.status_code} {reply.text[:200]}")
                current["other"] = total - sum(
                    v for k, v in current.items() if "gc" not in k and k not in WITHIN_FINAL_WRITES
                )
                current["total"] = total
                current["cpu: response-api thread"] = api_cpu
                current["cpu: whole process"] = process_cpu
                if sample >= WARMUP:
                    results[r].append(current)
    for r in rounds:
        report(r, results[r])


def report(rounds: int, samples: list[Sample]) -> None:
    cpu = {"cpu: response-api thread", "cpu: whole process"} | {n for s in samples for n in s if "gc" in n}
    spans = sorted({name for s in samples for name in s} - {"total", "other", *cpu})
    names = [*spans, "other", "total", *sorted(cpu)]
    totals = sorted(samples, key=lambda s: s["total"])
    tail = totals[int(len(totals) * 0.95) :]
    middle = totals[int(len(totals) * 0.4) : int(len(totals) * 0.6)]
    print(f"\n## {rounds} tool round(s): {len(samples)} requests; ms; 'other' excludes the cpu rows")
    print("| span | p50 | p99 | share of requests | mean, middle 20% | mean, slowest 5% |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        values = [s.get(name, 0.0) for s in samples]
        seen = sum(1 for s in samples if name in s) / len(samples)
        mid = statistics.fmean(s.get(name, 0.0) for s in middle)
        slow = statistics.fmean(s.get(name, 0.0) for s in tail)
        cells = (p(values, 0.5), p(values, 0.99), seen, mid, slow)
        print(f"| {name} | " + " | ".join(f"{cell:.2f}" for cell in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, nargs="*", default=[0, 1])
    parser.add_argument(
        "--no-freeze", action="store_true", help="the 'before' arm: leave the startup heap to the collector"
    )
    args = parser.parse_args()
    if args.no_freeze:
        heap._frozen = True  # as if already frozen: the startup heap stays with the collector
    instrument()
    print(
        f"# responses_trace{' --no-freeze' if args.no_freeze else ''}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    with loopback() as setup:
        assert setup.api is not None  # in this process: its methods are the ones timed
        asyncio.run(measure(setup.api, setup.token, setup.upstream, tuple(args.rounds), args.samples))
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
