"""What a conversation turn adds to a plain request, in CPU of llm-api and of Postgres.

The arms are those of `bench/load.py`'s two series: `plain` and `turn` (every request starts a new
conversation, `conversation: {}`), each non-streamed and streamed (8 chunks): `plain`, `plain-s`,
`turn`, `turn-s`; and `conv`, `conv-s`, every request continuing one of 64 stored conversations
(`"conversation": "<id>"`: its history is read first, as in `bench/chat_overhead.py`'s
`llm-api+conv` arm). `--arms` picks some. `--clients` requests are kept in flight, so turns are
group-committed as under load. Each arm's figures are the CPU time per request of the llm-api
process (its threads' schedstat) and of its Postgres (the postmaster, its living backends, and the
exited ones through the postmaster's cutime/cstime), on a machine shared with other work. With
`--baseline-tree` a second llm-api (on its own Postgres) runs that checkout, and every arm of both
is interleaved in rounds. With `--profile`, py-spy samples this checkout's llm-api during one more
pass of each arm.

Run: `.venv/bin/python -m bench.turn_cpu [--requests 3000] [--clients 16] [--baseline-tree DIR]
[--arms plain,conv] [--profile] [--set KEY=VALUE ...]`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench.chat_overhead import ONE_USER_LIMITS, LlmApiProcess, launch_checkouts, start_upstream
from bench.cpu import cpu_ns, postmaster, process_tree, sampling, show_profile

MESSAGES = [{"role": "user", "content": "Say hello."}]
ARMS = ("plain", "plain-s", "turn", "turn-s", "conv", "conv-s")
CONVERSATIONS = 64


def postgres_ns(data_dir: Path) -> int:
    """Run time of a Postgres cluster so far: the postmaster, its living children, the exited ones."""
    main = postmaster(data_dir)
    total = cpu_ns(main)
    fields = Path(f"/proc/{main}/stat").read_text().rsplit(")", 1)[1].split()
    total += (int(fields[13]) + int(fields[14])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    for pid in process_tree([main]) - {main}:
        try:
            total += cpu_ns(pid)
        except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
            continue
    return total


@dataclass
class Target:
    label: str
    process: LlmApiProcess
    data_dir: Path
    headers: dict[str, str]
    conversations: itertools.cycle[str] | None = None  # what the `conv` arms continue, in turn

    async def start_conversations(self, session: aiohttp.ClientSession) -> None:
        ids = []
        for _ in range(CONVERSATIONS):
            url = f"{self.process.base}/v1/conversations"
            async with session.post(url, json={}, headers=self.headers) as response:
                ids.append((await response.json())["id"])
        self.conversations = itertools.cycle(ids)

    async def commits(self) -> tuple[int, int]:
        """Transactions committed in llm-api's database so far, reads included (this query's own
        too), and the WAL flushes of its whole cluster: what group commit saves is the flushes."""
        connection = await asyncpg.connect(self.process.database_url)
        try:
            row = await connection.fetchrow(
                "SELECT xact_commit, (SELECT wal_sync FROM pg_stat_wal) AS wal_sync"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            await connection.close()
        assert row is not None
        return int(row["xact_commit"]), int(row["wal_sync"])


async def drive(session: aiohttp.ClientSession, target: Target, arm: str, count: int, clients: int) -> None:
    body: dict[str, object] = {"model": "bench/fake-model", "messages": MESSAGES}
    if arm.endswith("-s"):
        body.update(stream=True, max_tokens=8)
    if arm.startswith("turn"):
        body["conversation"] = {}
    url = f"{target.process.base}/v1/chat/completions"
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if arm.startswith("conv"):
                assert target.conversations is not None
                body["conversation"] = next(target.conversations)
            async with session.post(url, json=body, headers=target.headers) as response:
                content = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{response.status} {content[:200]!r}")

    await asyncio.gather(*(client() for _ in range(clients)))


async def measure(
    targets: list[Target],
    arms: list[str],
    requests: int,
    rounds: int,
    clients: int,
    profile_dir: Path | None,
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, tuple[int, int]], dict[str, Path]]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends (while the other arms run).
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        for target in targets:
            await target.start_conversations(session)
        runs = [(target, arm) for target in targets for arm in arms]
        for target, arm in runs:  # warm-up: connections, caches, lazy imports
            await drive(session, target, arm, 300, clients)
        figures: dict[str, list[tuple[float, float]]] = {f"{t.label}{arm}": [] for t, arm in runs}
        commits: dict[str, tuple[int, int]] = dict.fromkeys(figures, (0, 0))
        per_round = requests // rounds
        for number in range(rounds):
            for target, arm in runs[number % len(runs) :] + runs[: number % len(runs)]:
                before = await target.commits()
                app, database = cpu_ns(target.process.pid), postgres_ns(target.data_dir)
                await drive(session, target, arm, per_round, clients)
                figures[f"{target.label}{arm}"].append(
                    (
                        (cpu_ns(target.process.pid) - app) / per_round / 1000,
                        (postgres_ns(target.data_dir) - database) / per_round / 1000,
                    )
                )
                # pg_stat_database is updated when a backend goes idle: a moment after the last commit.
                await asyncio.sleep(0.6)
                after = await target.commits()
                sums = commits[f"{target.label}{arm}"]
                commits[f"{target.label}{arm}"] = (
                    sums[0] + after[0] - before[0] - 1,
                    sums[1] + after[1] - before[1],
                )
        profiles: dict[str, Path] = {}
        if profile_dir is not None:
            ours = targets[-1]
            for arm in arms:
                async with sampling(ours.process.pid, profile_dir / f"{arm}.txt") as output:
                    await drive(session, ours, arm, requests, clients)
                profiles[arm] = output
    return figures, commits, profiles


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000, help="per arm, split over the rounds")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16, help="requests in flight")
    parser.add_argument("--baseline-tree", type=Path)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy the raw profiles here")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"some of {','.join(ARMS)}")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    arms = args.arms.split(",")
    if unknown := set(arms) - set(ARMS):
        parser.error(f"unknown arms {sorted(unknown)}")
    extra = dict(item.split("=", 1) for item in args.set)
    with tempfile.TemporaryDirectory(prefix="jan-turn-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # pgserver runs as an unprivileged user when this runs as root
        upstream = start_upstream(stack)
        # As in bench/load.py: no access log line per request.
        env = {"LOG_LEVEL": "WARNING", **ONE_USER_LIMITS, **extra}
        targets = []
        for label, process in launch_checkouts(stack, tmp, upstream, args.baseline_tree, env).items():
            token = process.issuer.mint("bench-user", ttl_seconds=3600)
            headers = {"Authorization": f"Bearer {token}"}
            targets.append(Target(label, process, tmp / (label or "ours") / "pg", headers))
        loads = [Path("/proc/loadavg").read_text().split()[0]]
        figures, commits, profiles = asyncio.run(
            measure(targets, arms, args.requests, args.rounds, args.clients, tmp if args.profile else None)
        )
        loads.append(Path("/proc/loadavg").read_text().split()[0])
        print(f"\nmachine: {os.cpu_count()} cores, loadavg {' -> '.join(loads)}; env {extra}")
        print(f"{args.requests} requests per arm in {args.rounds} rounds, {args.clients} in flight")
        print(
            "\nCPU µs per request, median over rounds (min-max): llm-api | Postgres | "
            "per request: transactions (reads included), WAL flushes"
        )
        medians: dict[str, tuple[float, float]] = {}
        measured = args.requests // args.rounds * args.rounds
        for name, values in figures.items():
            apps, dbs = [v[0] for v in values], [v[1] for v in values]
            medians[name] = (median(apps), median(dbs))
            print(
                f"{name:>14} {medians[name][0]:6.0f} ({min(apps):.0f}-{max(apps):.0f}) | "
                f"{medians[name][1]:5.0f} ({min(dbs):.0f}-{max(dbs):.0f}) | "
                f"{commits[name][0] / measured:.2f} transactions, {commits[name][1] / measured:.3f} flushes"
            )
        for target in targets:
            for kind, stream in itertools.product(("turn", "conv"), ("", "-s")):
                if f"{kind}{stream}" not in arms or f"plain{stream}" not in arms:
                    continue
                turn = medians[f"{target.label}{kind}{stream}"]
                plain = medians[f"{target.label}plain{stream}"]
                print(
                    f"  {target.label}{kind}{stream} - plain{stream}: llm-api +{turn[0] - plain[0]:.0f} µs, "
                    f"Postgres +{turn[1] - plain[1]:.0f} µs; "
                    f"plain / {kind} llm-api = {plain[0] / turn[0]:.2f}"
                )
        if args.baseline_tree is not None:
            print("ours / base: median over rounds of the ratio within a round (run a minute apart at most)")
            for arm in arms:
                pairs = list(zip(figures[arm], figures[f"base-{arm}"], strict=True))
                app = median([ours[0] / base[0] for ours, base in pairs])
                database = median([ours[1] / max(base[1], 1) for ours, base in pairs])
                print(f"  {arm}: llm-api {app:.3f}, Postgres {database:.3f}")
        for arm, path in profiles.items():
            show_profile(arm, path, medians[arm][0])
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, args.keep / path.name)


if __name__ == "__main__":
    main()
