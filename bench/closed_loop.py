"""Closed-loop load beside the peer: throughput and latency at 64 concurrent clients, per arm.

Arms, all in one run against the same fake upstream (`bench.fake_upstream`): direct, llm-api (one
uvicorn process, JWT auth), llm-api with a conversation on every request (`llm-api+conv`: each client
continues its own conversation, so the history read, the history sent upstream and the commit before
the acknowledgement are all on the path), and LiteLLM's proxy (one process, `bench.chat_overhead`
installs it into `.bench/litellm`). Each arm runs `--concurrency` clients for `--seconds`, each sending
its next request as soon as the previous one is answered, non-streaming (`fake-model`, answered at
once) and streaming (8 chunks, 5 ms apart). Each arm's time is split over `--rounds` segments (4),
the arms taking turns in an order reversed every round, each segment after a second of warm-up at
full concurrency: run one after the other, a later arm ran ~30% faster whatever its code.

Per arm and mode: requests/s, p50/p99 latency (to the last byte), errors, and the "added" p50/p99
(arm minus direct); then each segment's own p99, in the order they ran, since the machine's speed
drifts over minutes and the pooled p99 takes the slowest segments' tails. The machine is shared and
small, so the proxy, the upstream and the client compete for the same cores: read the ratios beside
each other, with the load average printed.

With `--baseline-tree DIR` (another checkout, e.g. main's), a second llm-api runs from it beside this
one, on its own database, and its arms (`base llm-api`, `base llm-api+conv`) follow this one's.

With `--pin`, each proxy (llm-api, LiteLLM) runs its segments alone on the last CPU, with the load
generator, the upstream and Postgres on the others (`bench.pinning`), as a proxy has a core of its
own in a deployment; the direct arm is not pinned.

Run: `.venv/bin/python -m bench.closed_loop [--seconds 20] [--concurrency 64] [--rounds 4]
[--without-litellm] [--baseline-tree DIR] [--pin]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.chat_overhead import ONE_USER_LIMITS, Arm, start_litellm, start_llm_api, start_upstream
from bench.cpu import postmaster
from bench.pinning import check_cores, own_core

MESSAGES = [{"role": "user", "content": "Say hello."}]
STREAM_CHUNKS = 8
WARMUP_SECONDS = 1.0


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)  # by status or exception
    seconds: float = 0.0
    segments: list[int] = field(default_factory=list)  # where each segment's latencies end

    def segment_p99s(self) -> list[float]:
        starts = [0, *self.segments[:-1]]
        return [pct(self.latencies[a:b], 0.99) for a, b in zip(starts, self.segments, strict=True)]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def client_loop(
    session: aiohttp.ClientSession,
    arm: Arm,
    stream: bool,
    extra: dict[str, Any],
    until: float,
    result: Result,
) -> None:
    body: dict[str, Any] = {"model": arm.prefix + "fake-model", "messages": MESSAGES, **extra}
    if stream:
        body |= {"stream": True, "max_tokens": STREAM_CHUNKS}
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            async with session.post(
                f"{arm.url}/chat/completions", json=body, headers=arm.headers
            ) as response:
                content = await response.read()
                kind = str(response.status) if response.status != 200 else ""
                if not kind and b'"error"' in content[-300:]:
                    kind = "error event"
        except (aiohttp.ClientError, TimeoutError) as exc:
            kind = type(exc).__name__
        if kind:
            result.errors[kind] = result.errors.get(kind, 0) + 1
        else:
            result.latencies.append(time.perf_counter() - started)


async def run_arm(
    arm: Arm, stream: bool, concurrency: int, seconds: float, conversations: list[str], into: Result
) -> None:
    """One segment of `arm`: a second at full concurrency (not counted), then `seconds` measured into
    `into`, with fresh connections each time (as every arm gets)."""
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        extras = [{"conversation": conversations[n]} if conversations else {} for n in range(concurrency)]

        async def load(until: float, result: Result) -> None:
            await asyncio.gather(
                *(client_loop(session, arm, stream, extras[n], until, result) for n in range(concurrency))
            )

        await load(time.perf_counter() + WARMUP_SECONDS, Result())
        started = time.perf_counter()
        await load(started + seconds, into)
        into.seconds += time.perf_counter() - started
        into.segments.append(len(into.latencies))


def run_rounds(
    arms: list[tuple[Arm, list[str]]],
    stream: bool,
    concurrency: int,
    seconds: float,
    rounds: int,
    pinned_beside: list[int] | None = None,
) -> list[Result]:
    """Every arm's `seconds` split over `rounds` segments, the arms taking turns in an order that
    reverses every round: run one after another, an arm that came later ran faster whatever its code
    (seen with two identical llm-api checkouts swapped), so drift and order must hit every arm alike.
    With `pinned_beside` (the other processes' pids), a proxy arm's segments run on a core of its own."""
    results = [Result() for _ in arms]
    order = list(range(len(arms)))
    gc.freeze()  # what setup left: no collection needs to walk it again
    for _ in range(rounds):
        for index in order:
            arm, conversations = arms[index]
            placement: AbstractContextManager[None] = nullcontext()
            if pinned_beside is not None and "proxy" in arm.pids:
                placement = own_core(arm.pids["proxy"], pinned_beside)
            with placement, collected_between():
                asyncio.run(
                    run_arm(arm, stream, concurrency, seconds / rounds, conversations, results[index])
                )
        order.reverse()
    return results


@contextmanager
def collected_between() -> Iterator[None]:
    """No garbage collection in this process (the load generator) while inside, one afterwards.
    A collection stalls every client at once: in a 5 s segment at ~6,300 req/s (pinned llm-api)
    this process ran 88 collections, one of them a full one of 56 ms, about 1% of the segment, so
    that one pause alone could set any arm's p99 (16.9 ms with collections, 15.4 without)."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def conversations_for(arm: Arm, count: int) -> list[str]:
    with httpx.Client(base_url=arm.url, headers=arm.headers, timeout=30) as client:
        return [client.post("/conversations", json={}).json()["id"] for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4, help="segments per arm, arms taking turns")
    parser.add_argument("--without-litellm", action="store_true")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout, run beside this one")
    parser.add_argument("--pin", action="store_true", help="each proxy on a core of its own")
    args = parser.parse_args()
    if args.pin:
        check_cores()
    with tempfile.TemporaryDirectory(prefix="jan-closed-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # pgserver runs as an unprivileged user when this runs as root
        started: dict[str, int] = {}
        upstream = start_upstream(stack, started)
        llm_api, pid = start_llm_api(stack, tmp, upstream, ONE_USER_LIMITS)
        servers = [("", llm_api, pid)]
        beside = [os.getpid(), started["upstream"], postmaster(tmp / "pg")]
        if args.baseline_tree is not None:
            (tmp / "base").mkdir(mode=0o755)
            # PYTHONSAFEPATH: `python -m` would otherwise import this checkout (the cwd) first.
            env = {**ONE_USER_LIMITS, "PYTHONPATH": str(args.baseline_tree.resolve()), "PYTHONSAFEPATH": "1"}
            servers.append(("base ", *start_llm_api(stack, tmp / "base", upstream, env)))
            beside.append(postmaster(tmp / "base" / "pg"))
        arms: list[tuple[Arm, list[str]]] = [(Arm("direct", upstream, "", {}), [])]
        for label, server, pid in servers:
            arms.append(
                (Arm(f"{label}llm-api", server.url, server.prefix, server.headers, pids={"proxy": pid}), [])
            )
        for label, server, pid in servers:
            conv = Arm(f"{label}llm-api+conv", server.url, server.prefix, server.headers, pids={"proxy": pid})
            arms.append((conv, conversations_for(server, args.concurrency)))
        if not args.without_litellm:
            litellm = start_litellm(stack, tmp, upstream, started)
            litellm.pids = {"proxy": started["litellm"]}
            arms.append((litellm, []))
        print(
            f"machine: {os.cpu_count()} cores; loadavg {Path('/proc/loadavg').read_text().strip()}; "
            f"{args.concurrency} clients x {args.seconds:.0f} s per arm and mode, in {args.rounds} rounds "
            f"(arms taking turns, order reversed each round; {WARMUP_SECONDS:.0f} s warm-up per segment)"
        )
        if args.baseline_tree is not None:
            print(f"base *: llm-api from {args.baseline_tree}; the others from this checkout")
        if args.pin:
            print(
                f"pinned: each proxy alone on CPU {max(os.sched_getaffinity(0))}, the load generator, "
                "the upstream and Postgres on the others; the direct arm unpinned"
            )
        print("| mode | arm | req/s | / direct | p50 ms | p99 ms | +p50 | +p99 | errors | loadavg |")
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        rates: dict[tuple[bool, str], float] = {}
        for stream in (False, True):
            results = run_rounds(
                arms, stream, args.concurrency, args.seconds, args.rounds, beside if args.pin else None
            )
            base = results[0]
            for (arm, _), result in zip(arms, results, strict=True):
                rates[stream, arm.name] = result.rate
                p50, p99 = pct(result.latencies, 0.5), pct(result.latencies, 0.99)
                print(
                    f"| {'stream' if stream else 'plain'} | {arm.name} | {result.rate:.0f} "
                    f"| {result.rate / base.rate:.2f} | {p50:.1f} | {p99:.1f} "
                    f"| {p50 - pct(base.latencies, 0.5):+.1f} | {p99 - pct(base.latencies, 0.99):+.1f} "
                    f"| {sum(result.errors.values())} {result.errors or ''} | {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
            for (arm, _), result in zip(arms, results, strict=True):
                p99s = " ".join(f"{value:.1f}" for value in result.segment_p99s())
                print(f"  {'stream' if stream else 'plain'} {arm.name}: p99 per segment {p99s} ms")
        for stream in (False, True):
            mode = "stream" if stream else "plain"
            for label, _, _ in servers:
                ratio = rates[stream, f"{label}llm-api+conv"] / rates[stream, f"{label}llm-api"]
                print(
                    f"{mode}: {label}llm-api+conv / {label}llm-api throughput = {ratio:.2f} (target >= 0.8)"
                )
        if not args.without_litellm:
            for stream in (False, True):
                ratio = rates[stream, "llm-api"] / rates[stream, "litellm"]
                mode = "stream" if stream else "plain"
                verdict = "ok" if ratio >= 3 else "MISSED"
                print(f"{mode}: llm-api / litellm throughput = {ratio:.2f} (target >= 3) {verdict}")


if __name__ == "__main__":
    main()
