"""A core of its own for the proxy under test, as it has in a deployment.

On a small machine the load generator, the fake upstream, Postgres and the proxy are all busy at
once and share the cores wherever the scheduler puts them, so a proxy's closed-loop figures also
measure that placement. `own_core` pins the proxy (every thread of it and of its children) to the
last CPU and everything else the bench started to the others, for the time of one measurement.
What it does not remove: pinned, the load generator and the upstream share the other cores (on two
cores, one core between them), and the tail that is left (session 10, quiet 2-core VM, 64 clients: llm-api
pinned 5,191 req/s, p50 11.7 ms, p99 24.3 ms; unpinned 4,110 req/s, 13.8 ms, 32.1 ms).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.cpu import process_tree


def pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Every thread of every process in `pids` onto `cpus`; a process or thread gone meanwhile is skipped."""
    for pid in pids:
        try:
            threads = [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread, cpus)
            except (ProcessLookupError, FileNotFoundError):
                continue


def check_cores() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("pinning needs at least two CPUs: one for the proxy, one for the rest")


@contextmanager
def own_core(proxy: int, others: Iterable[int]) -> Iterator[None]:
    """While inside: `proxy`'s process tree alone on the last CPU, the trees of `others` on the rest.
    Afterwards both go back to every CPU this process had."""
    cpus = os.sched_getaffinity(0)
    alone = {max(cpus)}
    proxies, rest = process_tree([proxy]), process_tree(others)
    pin(rest - proxies, cpus - alone)
    pin(proxies, alone)
    try:
        yield
    finally:
        pin(proxies | process_tree(others), cpus)
