"""Connection-edge stress: apps.common.serving's protocol against uvicorn's stock httptools one.

    python -m bench.serving_stress [--rounds 300] [--keep-alive 0.3]

Each protocol serves the same small ASGI app in its own process (`timeout_keep_alive` small, so the
keep-alive edge is hit often), and the same clients run against both: keep-alive connections reused
right around the server's keep-alive timeout, `Connection: close` requests, streams the client drops
after the first chunk, an app that fails after `http.response.start`, and bodies big enough to pause
writing. Errors are counted by scenario and type; the scenario that must fail (the app's error after
the head) is counted separately from those that must not.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from apps.gateway.embedded import free_port, stop_process

BIG = 4 * 1024 * 1024
JITTER = 0.005  # seconds either side of the server's keep-alive timeout

SERVER = """
import sys, asyncio, uvicorn
from apps.common.serving import CoalescingHttpToolsProtocol

BIG = b"x" * {big}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/stream":
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        for _ in range(20):
            await send({{"type": "http.response.body", "body": b"chunk\\n", "more_body": True}})
            await asyncio.sleep(0.005)
        await send({{"type": "http.response.body", "body": b""}})
        return
    if path == "/fail":
        await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}})
        raise RuntimeError("after the head")
    body = BIG if path == "/big" else b'{{"ok":true}}'
    length = str(len(body)).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]}})
    await send({{"type": "http.response.body", "body": body}})

http = CoalescingHttpToolsProtocol if sys.argv[1] == "coalescing" else "httptools"
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=http, loop="uvloop",
            timeout_keep_alive=float(sys.argv[3]), log_level="warning", access_log=False)
"""


async def _wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


Scenario = Callable[[httpx.AsyncClient, str], Awaitable[None]]


async def keep_alive_edge(client: httpx.AsyncClient, url: str, keep_alive: float, jitter: float) -> None:
    await client.get(f"{url}/plain")
    # Sleep to within `jitter` of the server's keep-alive timeout (the client's own pool keeps longer).
    await asyncio.sleep(keep_alive + random.uniform(-jitter, jitter))
    response = await client.get(f"{url}/plain")
    response.raise_for_status()


async def connection_close(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(f"{url}/plain", headers={"connection": "close"})
    response.raise_for_status()


async def dropped_stream(client: httpx.AsyncClient, url: str) -> None:
    async with client.stream("GET", f"{url}/stream") as response:
        async for _ in response.aiter_bytes():
            break  # closing mid-response
    response = await client.get(f"{url}/plain")  # the pool's next connection still works
    response.raise_for_status()


async def big_body(client: httpx.AsyncClient, url: str) -> None:
    async with client.stream("GET", f"{url}/big") as response:
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if random.random() < 0.05:
                await asyncio.sleep(0.01)  # a slow reader: the server's writes pause and resume
    if total != BIG:
        raise RuntimeError(f"big body cut at {total}")


async def fail_after_head(client: httpx.AsyncClient, url: str) -> None:
    await client.get(f"{url}/fail")


async def run_arm(
    protocol: str, rounds: int, keep_alive: float, clients: int, only: str | None, jitter: float = JITTER
) -> dict[str, Counter[str]]:
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix=f"serving-stress-{protocol}-", suffix=".log", delete=False)
    with log:
        process = subprocess.Popen(  # noqa: ASYNC220 - once per arm, before any client runs
            [sys.executable, "-c", SERVER.format(big=BIG), protocol, str(port), str(keep_alive)],
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    counts: dict[str, Counter[str]] = {}
    try:
        await _wait_up(f"{url}/plain")
        scenarios: dict[str, Callable[[httpx.AsyncClient], Awaitable[None]]] = {
            "keep-alive edge": lambda c: keep_alive_edge(c, url, keep_alive, jitter),
            "connection: close": lambda c: connection_close(c, url),
            "dropped stream": lambda c: dropped_stream(c, url),
            "big body": lambda c: big_body(c, url),
            "fail after head (must fail)": lambda c: fail_after_head(c, url),
        }
        if only:
            scenarios = {name: run for name, run in scenarios.items() if name.startswith(only)}
        for name in scenarios:
            counts[name] = Counter()

        async def worker(client: httpx.AsyncClient) -> None:
            for _ in range(rounds):
                name = random.choice(list(scenarios))
                try:
                    await scenarios[name](client)
                    counts[name]["ok"] += 1
                except Exception as exc:  # counted by type
                    counts[name][type(exc).__name__] += 1

        limits = httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            await asyncio.gather(*(worker(client) for _ in range(clients)))
    finally:
        stop_process(process)
    lines = Path(log.name).read_text(errors="replace")  # noqa: ASYNC240 - the arm is over
    print(f"{protocol}: server log {log.name} ({lines.count('Traceback')} tracebacks)")
    return counts


def _report(protocol: str, counts: dict[str, Counter[str]]) -> None:
    for name, counter in counts.items():
        print(f"  {protocol:10} {name:28} {dict(counter)}")


async def main(args: argparse.Namespace) -> None:
    totals: dict[str, dict[str, Counter[str]]] = {"httptools": {}, "coalescing": {}}
    for _ in range(args.repeats):
        for protocol in ("httptools", "coalescing"):  # interleaved: same load for both
            counts = await run_arm(
                protocol, args.rounds, args.keep_alive, args.clients, args.only, args.jitter
            )
            for name, counter in counts.items():
                totals[protocol].setdefault(name, Counter()).update(counter)
    print(f"loadavg {Path('/proc/loadavg').read_text().strip()}")  # noqa: ASYNC240 - all arms are over
    for protocol, counts in totals.items():
        _report(protocol, counts)


def _parse() -> Any:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=60, help="scenarios per client")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep-alive", type=float, default=0.2)
    parser.add_argument("--jitter", type=float, default=JITTER, help="seconds either side of keep-alive")
    parser.add_argument("--only", help="run the scenarios whose name starts with this")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_parse()))
