"""Where llm-api's CPU goes on one chat completion: CPU per request per arm, and the frames behind it.

llm-api runs as one uvicorn process (JWT auth, embedded Postgres) in front of `bench.fake_upstream`,
exactly as in `bench.chat_overhead`. Arms, interleaved in rounds: `plain` (no conversation) and
`conv` (every request continues one of 16 conversations). Each arm's figure is the CPU time the
llm-api process used per request, summed over its threads from /proc/<pid>/task/*/schedstat
(nanoseconds of run time): unlike latency, it holds on a machine shared with other work.

With `--profile`, py-spy samples the llm-api process (1000 Hz) during one extra pass of each arm and
the script prints, per arm, the frames with the largest share of samples (inclusive, and self) and
so their CPU microseconds per request. py-spy is a bench tool only (the `dev` extra), never the product.

With `--concurrency N`, N clients send at once (a closed loop, as `bench.closed_loop` but measuring
CPU rather than latency): costs a busy event loop shares between the requests of one turn (waking up,
a log write) then weigh less than in the sequential default, where every request wakes the process.

Run: `.venv/bin/python -m bench.chat_cpu [--requests 2000] [--concurrency 1] [--profile]
[--set KEY=VALUE ...]`
(a minute or two; `--set` passes an environment setting to llm-api, e.g. `--set OTEL_...=...`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.chat_overhead import MESSAGES, ONE_USER_LIMITS, LlmApiProcess, launch_checkouts, start_upstream
from bench.cpu import cpu_ns, sampling, show_profile, user_system

CONVERSATIONS = 16


async def drive(
    client: httpx.AsyncClient, count: int, conversations: list[str] | None, concurrency: int = 1
) -> None:
    """`count` requests from `concurrency` clients at once, each sending its share one after another."""

    async def one_client(first: int) -> None:
        for number in range(first, count, concurrency):
            body: dict[str, object] = {"model": "bench/fake-model", "messages": MESSAGES}
            if conversations:
                body["conversation"] = conversations[number % len(conversations)]
            response = await client.post("/chat/completions", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")

    await asyncio.gather(*(one_client(first) for first in range(concurrency)))


@dataclass
class Target:
    """One llm-api process and the arms driven through it."""

    label: str
    pid: int
    client: httpx.AsyncClient
    concurrency: int = 1
    arms: dict[str, list[str] | None] = field(default_factory=dict)


async def measure(
    targets: list[Target], requests: int, rounds: int, profile_dir: Path | None
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Path]]:
    for target in targets:
        client = target.client
        ids = [(await client.post("/conversations", json={})).json()["id"] for _ in range(CONVERSATIONS)]
        target.arms = {f"{target.label}plain": None, f"{target.label}conv": ids}
        for conversations in target.arms.values():  # warm-up: connections, caches, lazy imports
            await drive(client, 200, conversations, target.concurrency)
    runs = [(target, name) for target in targets for name in target.arms]
    per_request: dict[str, list[float]] = {name: [] for _, name in runs}
    split: dict[str, list[float]] = {name: [0.0, 0.0] for _, name in runs}
    for round_number in range(rounds):
        for target, name in runs[round_number % len(runs) :] + runs[: round_number % len(runs)]:
            pid = target.pid
            before, (user, system) = cpu_ns(pid), user_system(pid)
            await drive(target.client, requests // rounds, target.arms[name], target.concurrency)
            per_request[name].append((cpu_ns(pid) - before) / (requests // rounds) / 1000)
            user_after, system_after = user_system(pid)
            split[name][0] += (user_after - user) / requests * 1e6
            split[name][1] += (system_after - system) / requests * 1e6
    profiles: dict[str, Path] = {}
    if profile_dir is not None:
        for target, name in runs:
            profiles[name] = await profile(target, name, requests, profile_dir)
    return per_request, split, profiles


async def profile(target: Target, name: str, requests: int, directory: Path) -> Path:
    async with sampling(target.pid, directory / f"{name}.txt") as output:
        await drive(target.client, requests, target.arms[name], target.concurrency)
    return output


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="per arm, split over the rounds")
    parser.add_argument("--rounds", type=int, default=20, help="arms interleaved this many times")
    parser.add_argument("--profile", action="store_true", help="sample with py-spy (needs ptrace)")
    parser.add_argument("--keep", type=Path, help="copy the raw profiles into this directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="clients at once (a closed loop: per-request costs a busy loop shares, such as waking up "
        "and writing log lines, are spread over the requests of a turn)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="a second checkout (e.g. `git archive integ | tar -x -C DIR`): its llm-api runs beside "
        "this one, arms interleaved, as `base-plain` / `base-conv`",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    if args.concurrency > 1:
        extra = {**ONE_USER_LIMITS, **extra}  # one bench user: let its concurrent requests in
    with tempfile.TemporaryDirectory(prefix="jan-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # pgserver runs as an unprivileged user when this runs as root
        upstream = start_upstream(stack)
        processes = launch_checkouts(stack, tmp, upstream, args.baseline_tree, extra)
        per_request, split, profiles = asyncio.run(
            run(processes, args.requests, args.rounds, tmp if args.profile else None, args.concurrency)
        )
        print(f"\nmachine: {os.cpu_count()} cores, Python {platform.python_version()}, ", end="")
        print(f"loadavg {Path('/proc/loadavg').read_text().split()[:3]}")
        print(
            f"settings: {args.requests} requests per arm from {args.concurrency} client(s), "
            f"{args.rounds} rounds, env {extra}"
        )
        if args.baseline_tree is not None:
            print(f"base-*: llm-api from {args.baseline_tree}; the others from this checkout")
        print("\nCPU µs per request: min / median / max over the rounds; user and system (clock ticks)")
        print(f"{'arm':>10} {'min':>7} {'median':>7} {'max':>7} {'user':>6} {'system':>6}")
        medians = {}
        for name, values in per_request.items():
            medians[name] = sorted(values)[len(values) // 2]
            user, system = split[name]
            low, high = min(values), max(values)
            print(f"{name:>10} {low:7.0f} {medians[name]:7.0f} {high:7.0f} {user:6.0f} {system:6.0f}")
        for label in processes:
            conv, plain = medians[f"{label}conv"], medians[f"{label}plain"]
            print(f"  {label}conv - {label}plain = {conv - plain:.0f} µs/request")
        if args.baseline_tree is not None:
            for arm in ("plain", "conv"):
                ratio = medians[arm] / medians[f"base-{arm}"]
                print(f"  {arm} / base-{arm} = {ratio:.3f}")
        for name, path in profiles.items():
            show_profile(name, path, medians[name])
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, args.keep / path.name)


async def run(
    processes: dict[str, LlmApiProcess],
    requests: int,
    rounds: int,
    profile_dir: Path | None,
    concurrency: int = 1,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, Path]]:
    async with AsyncExitStack() as stack:
        targets = []
        for label, process in processes.items():
            token = process.issuer.mint("bench-user", ttl_seconds=3600)
            client = httpx.AsyncClient(
                base_url=process.base + "/v1",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
                # Every client keeps its connection (httpx keeps 20 by default and reconnects the rest).
                limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            )
            client = await stack.enter_async_context(client)
            targets.append(Target(label, process.pid, client, concurrency))
        return await measure(targets, requests, rounds, profile_dir)


if __name__ == "__main__":
    main()
