"""Open-loop load against llm-api: where the knee is, and what happens past it.

llm-api runs as one uvicorn process (JWT auth, embedded Postgres) in front of `bench.fake_upstream`;
the load generator offers a rising rate, each step for `--seconds`, sending every request at its
scheduled time whether or not earlier ones have been answered (open loop: a slow server is not
given a break, as real clients do not give one). Half the requests are streamed (8 chunks). Requests
come from `--users` users round-robin, so the per-user bound is not what binds.

Two series: plain chat completions, then every request a conversation turn (`conversation: {}`, a
new conversation each time: the history read, the item writes and the turn writer are all on the
path). Per step it prints the achieved rate (answered 200s per second, over the step or until its
last answer if later), p50/p99 of the answered requests, errors (anything but 200/429/503, or no
answer), refusals (429/503, and their p99: the refusal must be fast), and for conversation turns
the turns stored (read from Postgres once the step has drained) against those acknowledged (200).

`--no-admission` runs the same steps with admission control off (`ADMISSION__ENABLED=false`), to
see the congestion collapse that admission control prevents. Loopback only; about 2 minutes.

Beside each step, the CPU the llm-api process used per answer (from /proc: unlike latencies, it does
not depend on who else uses the machine), and at the end the fitted CPU cost of a served request and
of a refusal per series (the CPU-bound knee of one process is about 1000 / that many requests/s), the
knee found (the highest step served in full) and how the steps at twice the knee compare with it.

With `--baseline-tree DIR` a second llm-api runs that checkout (on its own Postgres), and every
step is offered to both, one right after the other: an A/B in the same minutes of a shared machine.
Both ratios of the conversation series to the plain one are printed: by the fitted CPU per request
and by the knee steps (the default grid steps by 25 req/s between 100 and 400, so the knee's
resolution is about 10%).

Run: `.venv/bin/python -m bench.load [--rates 50,100:400:25] [--seconds 6] [--no-admission]
[--baseline-tree DIR] [--set K=V]` (`--set ADMISSION__MAX_LOOP_LAG_MS=50` passes a setting to llm-api).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from bench.chat_overhead import launch_llm_api, start_upstream
from bench.closed_loop import pct

MESSAGES = [{"role": "user", "content": "Say hello."}]
STREAM_CHUNKS = 8
DRAIN_SECONDS = 60.0


@dataclass
class Step:
    rate: float
    seconds: float
    conversation: bool
    label: str = ""  # which llm-api (`Target.label`)
    latencies: list[float] = field(default_factory=list)
    refusal_latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    stored: int | None = None
    kinds: dict[str, int] = field(default_factory=dict)  # what the errors were
    load: str = ""  # /proc/loadavg's 1-minute figure after the step (the machine is shared)
    cpu: float = 0.0  # seconds of CPU the llm-api process used during the step
    wall: float = 0.0  # from the first request sent to the last answer

    @property
    def acknowledged(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def refused(self) -> int:
        return self.statuses.get(429, 0) + self.statuses.get(503, 0)


@dataclass
class Target:
    label: str  # "" for this checkout, "base-" for `--baseline-tree`
    base: str
    headers: list[dict[str, str]]
    database_url: str
    pid: int


def start_llm_api(
    stack: ExitStack,
    tmp: Path,
    upstream: str,
    users: int,
    admission: bool,
    extra: dict[str, str] | None = None,
    tree: Path | None = None,
) -> Target:
    settings = {
        "LOG_LEVEL": "WARNING",
        "ADMISSION__ENABLED": "true" if admission else "false",
        # `python -m` would otherwise import the checkout in the cwd first, not `tree`.
        "PYTHONSAFEPATH": "1",
        **(extra or {}),
    }
    if tree is not None:
        settings["PYTHONPATH"] = str(tree.resolve())
    tmp.mkdir(mode=0o755, exist_ok=True)
    llm_api = launch_llm_api(stack, tmp, upstream, settings)
    headers = [
        {"Authorization": f"Bearer {llm_api.issuer.mint(f'load-user-{n}', ttl_seconds=3600)}"}
        for n in range(users)
    ]
    label = "" if tree is None else "base-"
    return Target(label, llm_api.base, headers, llm_api.database_url, llm_api.pid)


async def one(session: aiohttp.ClientSession, target: Target, step: Step, number: int) -> None:
    stream = number % 2 == 0
    body: dict[str, object] = {"model": "bench/fake-model", "messages": MESSAGES, "stream": stream}
    if stream:
        body["max_tokens"] = STREAM_CHUNKS
    if step.conversation:
        body["conversation"] = {}
    headers = target.headers[number % len(target.headers)]
    started = time.perf_counter()
    try:
        async with session.post(f"{target.base}/v1/chat/completions", json=body, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        step.errors += 1
        step.kinds[type(exc).__name__] = step.kinds.get(type(exc).__name__, 0) + 1
        return
    elapsed = time.perf_counter() - started
    step.statuses[status] = step.statuses.get(status, 0) + 1
    if status == 200:
        step.latencies.append(elapsed)
    elif status in (429, 503):
        step.refusal_latencies.append(elapsed)
    else:
        step.errors += 1
        step.kinds[str(status)] = step.kinds.get(str(status), 0) + 1


async def run_step(session: aiohttp.ClientSession, target: Target, step: Step) -> float:
    """Offer `step.rate` for `step.seconds`; returns the wall time until the last answer."""
    total = int(step.rate * step.seconds)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for number in range(total):
        delay = started + number / step.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(session, target, step, number)))
    await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
    return time.perf_counter() - started


async def stored_turns(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        items: int = await connection.fetchval("SELECT count(*) FROM llm_api.conversation_items")
    finally:
        await connection.close()
    return items // 2  # a turn stores the user message and the assistant's answer


async def settled_turns(database_url: str) -> int:
    """Stored turns once the count stops moving (the turn writer stores after acknowledging)."""
    count = await stored_turns(database_url)
    for _ in range(60):
        await asyncio.sleep(1)
        now = await stored_turns(database_url)
        if now == count:
            break
        count = now
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process: what a request costs, whoever else shares the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(targets: list[Target], rates: list[float], seconds: float) -> list[Step]:
    """Every step of both series; with two targets, each rate is run on both, one after the other
    (alternating which goes first), so they see the same machine."""
    steps: list[Step] = []
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends, so that a reused connection
    # the server has just closed is not counted as a server error.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
    timeout = aiohttp.ClientTimeout(total=DRAIN_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        before: dict[str, int] = {}
        for target in targets:
            await run_step(session, target, Step(20, 2, conversation=True))  # warm-up
            before[target.label] = await settled_turns(target.database_url)
        turn = 0
        for conversation in (False, True):
            for rate in rates:
                turn += 1
                for target in targets[turn % len(targets) :] + targets[: turn % len(targets)]:
                    step = Step(rate, seconds, conversation, target.label)
                    cpu = cpu_seconds(target.pid)
                    step.wall = await run_step(session, target, step)
                    step.cpu = cpu_seconds(target.pid) - cpu
                    step.load = f"{os.getloadavg()[0]:.1f}"
                    if conversation:
                        now = await settled_turns(target.database_url)
                        step.stored, before[target.label] = now - before[target.label], now
                    steps.append(step)
                    print(row(step), flush=True)
                    await asyncio.sleep(2)  # let the server settle between steps
    return steps


HEADER = (
    "| llm-api | offered | conversation | achieved | p50 / p99 ms (200s) | errors | refused "
    "| refusal p50 / p99 / max ms | server CPU ms / answer | stored / acked | loadavg |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def achieved(step: Step) -> float:
    return step.acknowledged / max(step.seconds, step.wall)


def row(step: Step) -> str:
    refusals = step.refusal_latencies
    timing = (
        f"{pct(refusals, 0.5):.0f} / {pct(refusals, 0.99):.0f} / {max(refusals) * 1000:.0f}"
        if refusals
        else "—"
    )
    stored = f"{step.stored} / {step.acknowledged}" if step.stored is not None else "—"
    cpu_ms = step.cpu * 1000 / max(step.acknowledged + step.refused, 1)
    return (
        f"| {step.label.rstrip('-') or 'this'} | {step.rate:.0f} req/s "
        f"| {'yes' if step.conversation else 'no'} | {achieved(step):.1f} req/s "
        f"| {pct(step.latencies, 0.5):.0f} / {pct(step.latencies, 0.99):.0f} "
        f"| {step.errors} | {step.refused} "
        f"| {timing} | {cpu_ms:.2f} | {stored} | {step.load} |" + (f" {step.kinds}" if step.kinds else "")
    )


def knee(steps: list[Step]) -> Step | None:
    """The highest step served in full (at least 95% of the offered rate, under 1% refused) below
    which every step was served in full too: where latency starts to grow, not a lucky step past it."""
    found = None
    for step in sorted(steps, key=lambda s: s.rate):
        if achieved(step) < 0.95 * step.rate or step.refused > 0.01 * step.rate * step.seconds:
            break
        found = step
    return found


def cpu_costs(steps: list[Step]) -> tuple[float, float] | None:
    """CPU ms per served request and per refusal, least squares over the steps (cpu = a*served + r*refused).

    This is what the knee is made of: one process on one free core serves about 1000 / a requests/s,
    whatever the machine's other load does to the latencies measured beside it."""
    sxx = sxy = syy = sxc = syc = 0.0
    for step in steps:
        x, y, c = float(step.acknowledged), float(step.refused), step.cpu * 1000
        sxx, sxy, syy, sxc, syc = sxx + x * x, sxy + x * y, syy + y * y, sxc + x * c, syc + y * c
    det = sxx * syy - sxy * sxy
    if det <= 0:
        served = sum(s.acknowledged for s in steps)
        return (sum(s.cpu for s in steps) * 1000 / served, float("nan")) if served else None
    return (sxc * syy - syc * sxy) / det, (sxx * syc - sxy * sxc) / det


def summary(steps: list[Step], label: str = "") -> None:
    """Per series: the fitted CPU per request and the knee; then conversation / plain both ways:
    from the fitted CPU (what one free core would serve: holds on a shared machine) and from the
    knee steps (what was served here; its resolution is the rate grid's step)."""
    name = label.rstrip("-") or "this checkout"
    print(f"\n{name}:")
    steps = [s for s in steps if s.label == label]
    costs: dict[bool, float] = {}
    for conversation in (False, True):
        fitted = cpu_costs([s for s in steps if s.conversation is conversation])
        if fitted is not None:
            costs[conversation] = fitted[0]
            kind = "conversation turn" if conversation else "plain request"
            print(
                f"CPU per {kind}: {fitted[0]:.2f} ms served, {fitted[1]:.2f} ms refused; "
                f"one free core serves ~{1000 / fitted[0]:.0f} req/s"
            )
    knees: dict[bool, Step] = {}
    for conversation in (False, True):
        series = [s for s in steps if s.conversation is conversation]
        found = knee(series)
        kind = "conversation turns" if conversation else "plain"
        if found is None:
            print(f"{kind}: no step was served in full")
            continue
        knees[conversation] = found
        p99 = pct(found.latencies, 0.99)
        print(f"{kind}: knee {found.rate:.0f} req/s ({achieved(found):.1f} achieved, p99 {p99:.0f} ms)")
        for past in (s for s in series if s.rate >= 1.9 * found.rate):
            rate_ratio = achieved(past) / achieved(found)
            p99_ratio = pct(past.latencies, 0.99) / p99
            print(
                f"  at {past.rate / found.rate:.1f}x the knee ({past.rate:.0f} req/s): achieved / knee's = "
                f"{rate_ratio:.2f} (target >= 0.90) {'ok' if rate_ratio >= 0.9 else 'MISSED'}, "
                f"p99 / knee's = {p99_ratio:.2f} (target <= 2) {'ok' if p99_ratio <= 2 else 'MISSED'}"
            )
    if len(costs) == 2:
        share = costs[False] / costs[True]
        verdict = "ok" if share >= 0.8 else "MISSED"
        print(f"conversation / plain, by fitted CPU per request = {share:.2f} (target >= 0.80) {verdict}")
    if len(knees) == 2:
        share = achieved(knees[True]) / achieved(knees[False])
        verdict = "ok" if share >= 0.8 else "MISSED"
        print(f"conversation / plain, by knee step = {share:.2f} (target >= 0.80) {verdict}")


def parse_rates(text: str) -> list[float]:
    """`50,100,150` or ranges `FROM:TO:STEP` (inclusive), e.g. `50,100:400:25`."""
    rates: list[float] = []
    for part in text.split(","):
        if ":" in part:
            low, high, step = (float(x) for x in part.split(":"))
            count = round((high - low) / step)
            rates.extend(low + n * step for n in range(count + 1))
        else:
            rates.append(float(part))
    return sorted(set(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--rates",
        default="50,100:400:25,500,600",
        help="offered rates: a list, with FROM:TO:STEP ranges (the default steps by 25 near the knees)",
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--no-admission", action="store_true")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="a second checkout: its llm-api (own Postgres) runs each step right after this one's",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="llm-api setting, e.g. ADMISSION__MAX_CONCURRENT=16",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    rates = parse_rates(args.rates)
    with tempfile.TemporaryDirectory(prefix="jan-load-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # pgserver runs as an unprivileged user when this runs as root
        upstream = start_upstream(stack)
        admission = not args.no_admission
        targets = [start_llm_api(stack, tmp / "this", upstream, args.users, admission, extra)]
        if args.baseline_tree is not None:
            base = start_llm_api(
                stack, tmp / "base", upstream, args.users, admission, extra, args.baseline_tree
            )
            targets.insert(0, base)
        print(
            f"machine: {os.cpu_count()} cores, loadavg {Path('/proc/loadavg').read_text().strip()}; "
            f"admission control {'off' if args.no_admission else 'on'} {extra or ''}; "
            f"{args.seconds:.0f} s per step"
            + (f"; base: llm-api from {args.baseline_tree}" if args.baseline_tree else "")
        )
        print(HEADER, flush=True)
        steps = asyncio.run(measure(targets, rates, args.seconds))
        print(f"loadavg at the end: {Path('/proc/loadavg').read_text().strip()}")
        for target in targets:
            summary(steps, target.label)


if __name__ == "__main__":
    main()
