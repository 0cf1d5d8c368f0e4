"""CPU accounting and py-spy sampling of a benchmarked process, shared by the CPU benchmarks.

CPU time, not latency, is what these report: summed over the process's threads from
/proc/<pid>/task/*/schedstat (nanoseconds of run time), it holds on a machine shared with other work.
py-spy (the `dev` extra; a bench tool, never in the product) samples with `--gil`: only the thread
holding the GIL, so the event loop waiting in epoll is left out. A sample can still land while the
process holds the GIL but waits for a core (preempted right after waking a peer with a socket write),
so shares of frames that write to sockets are upper bounds on a loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import DEVNULL

TOP = 22
PY_SPY = str(Path(sys.executable).parent / "py-spy")


def cpu_ns(pid: int) -> int:
    """Run time of every thread of `pid`, in nanoseconds (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
    return total


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(roots: Iterable[int]) -> set[int]:
    """`roots` and every process descended from them."""
    children = _children()
    found: set[int] = set()
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def postmaster(data_dir: Path) -> int:
    """The pid of the Postgres cluster in `data_dir` (its backends are its children)."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches (sleeps) of every thread of `pid` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
    return total


def user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of `pid`, in clock ticks' resolution: which side of the syscall."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@asynccontextmanager
async def sampling(pid: int, output: Path) -> AsyncIterator[Path]:
    """py-spy samples `pid` at 1000 Hz while the block runs; its raw (collapsed) stacks go to `output`."""
    command = [PY_SPY, "record", "-p", str(pid), "-r", "1000", "-f", "raw", "--gil", "--nonblocking"]
    spy = await asyncio.create_subprocess_exec(*command, "-o", str(output), stdout=DEVNULL, stderr=DEVNULL)
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        yield output
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        await asyncio.wait_for(spy.wait(), 30)


def frames(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """(inclusive samples per frame, self samples per frame, all samples) of a py-spy raw profile
    taken with `--gil`: only the thread holding the GIL is sampled, so the event loop waiting in
    epoll (which releases it) is left out."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        parts = stack.split(";")
        count = int(count_text)
        total += count
        for part in set(parts):
            inclusive[_short(part)] += count
        own[_short(parts[-1])] += count
    return inclusive, own, total


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "hotpath/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


def show_profile(name: str, path: Path, cpu_us: float) -> None:
    inclusive, own, total = frames(path)
    if not total:
        print(f"\n{name}: no samples")
        return
    print(f"\n{name}: {total} busy samples; µs/request = share x {cpu_us:.0f} µs")
    print(f"  {'inclusive':>9} {'µs':>6}  frame")
    wrappers = [frame for frame, count in inclusive.items() if count > 0.95 * total]
    for frame, count in inclusive.most_common(TOP + len(wrappers)):
        if frame in wrappers:  # uvicorn's server loop and the like: in every sample
            continue
        print(f"  {count / total:9.1%} {count / total * cpu_us:6.0f}  {frame}")
    print(f"  {'self':>9} {'µs':>6}  frame")
    for frame, count in own.most_common(TOP):
        print(f"  {count / total:9.1%} {count / total * cpu_us:6.0f}  {frame}")
