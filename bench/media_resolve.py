"""What `POST /v1/media/resolve` costs per request and per placeholder, against a bare presign call.

Setup, all on loopback: an embedded Postgres (migrated), moto's S3 server, a JWKS issuer, and media-api
processes started as a container starts them (`jan-server serve media-api`: its server settings and
JSON logs at INFO, written to a file). 100 images are uploaded; then chat payloads carrying 0, 1, 10
and 100 `data:image/png;jan_<id>` placeholders (distinct ids) are resolved as llm-api would send them.

Arms, each its own media-api process on the same data, interleaved in rounds (the order rotates):
- `first`: the ready-id cache and URL reuse off, so every resolve queries and signs each id: what
  an image costs the first time it is resolved;
- `again`: the defaults, so a resolve within seconds of the last one costs neither (a conversation
  re-sending its images, a tool loop re-sending the history);
- with `--baseline-tree DIR`, `base` and `base1st`: another checkout's media-api, with its defaults
  and with the caches off (the A/B of `again` and of `first`; a setting the other checkout does not
  know is ignored there).
The baseline of the cost per placeholder is one bare `generate_presigned_url` call in this process.

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams (below), so that the latency
is the server's: httpx spent ~1.5 ms of CPU per request here, more than media-api itself, and the
sequential latency is the sum of both. `--client httpx` measures through httpx instead (llm-api calls
resolve with httpx today). Beside the latency: the CPU time media-api's process spent per request
(bench.cpu: unlike latency, it holds on a shared machine) and this client's own CPU per request.

Run: `.venv/bin/python -m bench.media_resolve [--baseline-tree DIR] [--client httpx] [--profile]`
(a minute or two). `--profile` samples the `again` arm with py-spy over 1000 one-placeholder
resolves and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
from pydantic import SecretStr

from apps.common.auth.issuer import LocalIssuer
from apps.common.migrations import upgrade
from apps.gateway.embedded import embedded_postgres, embedded_s3
from apps.media_api.services.storage import ObjectStore
from apps.media_api.settings import MediaApiSettings
from bench.cpu import cpu_ns, sampling, show_profile
from bench.served import served_app
from tests.harness.server import serve

SIZES = (0, 1, 10, 100)
ROUNDS = 8
REQUESTS_PER_ROUND = 40
PRESIGNS_PER_ROUND = 2000
CONCURRENCY = 8
CONCURRENT_REQUESTS = 200
PROFILED_RESOLVES = 1000
AUDIENCE = "jan-bench"
BUCKET = "bench-media"
RESOLVE = "/v1/media/resolve"
ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
NO_CACHES = {"MEDIA_RESOLVE_CACHE_SECONDS": "0", "MEDIA_RESOLVE_URL_REUSE_SECONDS": "0"}


class Client(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class LeanClient:
    """One keep-alive HTTP/1.1 connection: the request written in one piece, the answer read by its
    Content-Length. Enough for media-api's JSON answers, at a tenth of httpx's CPU per request."""

    def __init__(self, url: str, token: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._address = (host, int(port))
        self._head = f"host: {host}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._exchange(path, body)
        except (asyncio.IncompleteReadError, ConnectionResetError):  # the server closed an idle connection
            await self.close()
            return await self._exchange(path, body)

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(*self._address)
        reader, writer = self._streams
        writer.write(
            f"POST {path} HTTP/1.1\r\n{self._head}content-length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return int(head[9:12]), await reader.readexactly(length)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class HttpxClient:
    def __init__(self, url: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.content

    async def close(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, type[LeanClient] | type[HttpxClient]] = {"lean": LeanClient, "httpx": HttpxClient}


@dataclass
class Arm:
    name: str
    url: str
    pid: int


def media_env(database_url: str, s3: str, issuer_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "AUTH__ISSUER": "https://bench.test",
        "AUTH__AUDIENCE": AUDIENCE,
        "AUTH__JWKS_URL": f"{issuer_url}/jwks",
        "MEDIA_S3_ENDPOINT": s3,
        "MEDIA_S3_BUCKET": BUCKET,
        "MEDIA_S3_USE_PATH_STYLE": "true",
        "MEDIA_S3_ACCESS_KEY": "bench",
        "MEDIA_S3_SECRET_KEY": "bench",
        "MEDIA_S3_CREATE_BUCKET": "true",
    }


@contextmanager
def media_api(name: str, env: dict[str, str], logs: Path, tree: Path | None = None) -> Iterator[Arm]:
    """media-api as a container runs it, from this checkout or `tree`; its JSON logs go to `logs`."""
    # A loaded machine starts it slowly.
    with served_app("media-api", env, logs / f"{name}.log", tree=tree, ready_seconds=180) as (url, pid):
        yield Arm(name, url, pid)


def jwks_app(issuer: LocalIssuer) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    app.add_api_route("/jwks", lambda: issuer.jwks(), methods=["GET"])
    return app


def payload(ids: list[str]) -> bytes:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Describe these images."}]
    parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;{i}"}} for i in ids]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts}]
    return orjson.dumps({"payload": {"model": "m", "messages": messages}})


async def upload_images(client: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        data = base64.b64encode(PNG + uuid.uuid4().bytes).decode()
        body = {"source": {"type": "data_url", "data_url": f"data:image/png;base64,{data}"}}
        response = await client.post("/v1/media", json=body)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


async def timed_resolve(client: Client, body: bytes) -> float:
    started = time.perf_counter()
    status, answer = await client.post(RESOLVE, body)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(answer.decode(errors="replace"))
    return elapsed


async def concurrent_rate(clients: list[Client], body: bytes) -> float:
    remaining = CONCURRENT_REQUESTS

    async def worker(client: Client) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await timed_resolve(client, body)

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    return CONCURRENT_REQUESTS / (time.perf_counter() - started)


def presign_seconds(store: ObjectStore, keys: list[str]) -> list[float]:
    samples = []
    for index in range(PRESIGNS_PER_ROUND):
        started = time.perf_counter()
        store.presign_get(keys[index % len(keys)])
        samples.append(time.perf_counter() - started)
    return samples


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    latency: list[float]
    server_us: list[float]  # media-api's CPU per request, one figure per round
    client_us: list[float]  # this process's CPU per request, one figure per round
    rate: float = 0.0


async def measure(
    arms: list[Arm], kind: str, token: str, store: ObjectStore, profile_dir: Path | None
) -> tuple[dict[tuple[str, int], Figures], list[float], Path | None]:
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(
        base_url=arms[0].url, headers={"Authorization": f"Bearer {token}"}, limits=limits
    ) as up:
        ids = await upload_images(up, max(SIZES))
    bodies = {k: payload(ids[:k]) for k in SIZES}
    keys = [f"media/{i[4:]}.png" for i in ids]
    pools: dict[str, list[Client]] = {
        arm.name: [CLIENTS[kind](arm.url, token) for _ in range(CONCURRENCY)] for arm in arms
    }
    runs = [(arm, k) for arm in arms for k in SIZES]
    for arm, k in runs:  # warm-up: connections, caches, lazy imports
        for _ in range(10):
            await timed_resolve(pools[arm.name][0], bodies[k])
    presign_seconds(store, keys)
    figures = {(arm.name, k): Figures([], [], []) for arm, k in runs}
    presigns: list[float] = []
    for round_number in range(ROUNDS):
        shift = round_number % len(arms) * len(SIZES)
        for arm, k in runs[shift:] + runs[:shift]:
            client, entry = pools[arm.name][0], figures[arm.name, k]
            before, own_before = cpu_ns(arm.pid), time.process_time()
            for _ in range(REQUESTS_PER_ROUND):
                entry.latency.append(await timed_resolve(client, bodies[k]))
            entry.client_us.append((time.process_time() - own_before) / REQUESTS_PER_ROUND * 1e6)
            entry.server_us.append((cpu_ns(arm.pid) - before) / REQUESTS_PER_ROUND / 1000)
        presigns += presign_seconds(store, keys)
    for arm, k in runs:
        figures[arm.name, k].rate = await concurrent_rate(pools[arm.name], bodies[k])
    profile = None
    if profile_dir is not None:
        arm = next(a for a in arms if a.name == "again")
        async with sampling(arm.pid, profile_dir / "resolve-1.txt") as profile:
            for _ in range(PROFILED_RESOLVES):
                await timed_resolve(pools[arm.name][0], bodies[1])
    for pool in pools.values():
        for client in pool:
            await client.close()
    return figures, presigns, profile


def report(figures: dict[tuple[str, int], Figures], presigns: list[float], arms: list[Arm]) -> None:
    presign_us = statistics.median(presigns) * 1e6
    print(f"bare presign (boto3): p50 {presign_us:.1f} us, p99 {p(presigns, 0.99) * 1e6:.1f} us")
    print("latency per sequential resolve; CPU per request of media-api (server) and of this client;")
    print("per placeholder: (server CPU(k) - server CPU(0)) / k, and that over the bare presign\n")
    header = f"{'arm':>6} {'k':>4} {'p50 ms':>7} {'p99 ms':>7} {'seq/s':>6} {f'conc{CONCURRENCY}/s':>8} "
    print(header + f"{'server us':>10} {'client us':>10} {'us/ph':>7} {'x presign':>9}")
    for arm in arms:
        base = statistics.median(figures[arm.name, 0].server_us)
        for k in SIZES:
            entry = figures[arm.name, k]
            median, server = statistics.median(entry.latency), statistics.median(entry.server_us)
            per = (server - base) / k if k else float("nan")
            print(
                f"{arm.name:>6} {k:>4} {median * 1e3:>7.3f} {p(entry.latency, 0.99) * 1e3:>7.3f} "
                f"{1 / median:>6.0f} {entry.rate:>8.0f} {server:>10.0f} "
                f"{statistics.median(entry.client_us):>10.0f} {per:>7.1f} {per / presign_us:>9.2f}"
            )
    if any(arm.name == "base" for arm in arms):
        print()
        for k in SIZES:
            for name, baseline in (("again", "base"), ("first", "base1st")):
                entry, base_entry = figures[name, k], figures[baseline, k]
                latency = statistics.median(entry.latency) / statistics.median(base_entry.latency)
                cpu = statistics.median(entry.server_us) / statistics.median(base_entry.server_us)
                print(f"k={k:<3} {name} / {baseline}: p50 x{latency:.2f}, server CPU x{cpu:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client", choices=sorted(CLIENTS), default="lean")
    parser.add_argument("--profile", action="store_true", help="sample media-api with py-spy")
    parser.add_argument(
        "--baseline-tree", type=Path, help="another checkout, run beside as `base`, `base1st`"
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log, one line per upload
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jan-bench-media-")))
        os.chmod(tmp, 0o755)
        database_url = stack.enter_context(embedded_postgres(tmp / "pg")).url
        upgrade("apps.media_api", database_url)
        s3 = stack.enter_context(embedded_s3())
        issuer = LocalIssuer.generate("https://bench.test", AUDIENCE)
        jwks = stack.enter_context(serve(jwks_app(issuer)))
        env = media_env(database_url, s3, jwks.url)
        arms = [
            stack.enter_context(media_api("again", env, tmp)),
            stack.enter_context(media_api("first", {**env, **NO_CACHES}, tmp)),
        ]
        if args.baseline_tree is not None:
            arms.append(stack.enter_context(media_api("base", env, tmp, args.baseline_tree)))
            first = {**env, **NO_CACHES}
            arms.append(stack.enter_context(media_api("base1st", first, tmp, args.baseline_tree)))
        store = ObjectStore(
            MediaApiSettings(
                media_s3_endpoint=s3,
                media_s3_bucket=BUCKET,
                media_s3_use_path_style=True,
                media_s3_access_key=SecretStr("bench"),
                media_s3_secret_key=SecretStr("bench"),
            )
        )
        try:
            print(
                f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
            )
            print(f"load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
            print(
                f"rounds {ROUNDS} x {REQUESTS_PER_ROUND} sequential resolves per arm and size, interleaved; ",
                end="",
            )
            print(f"{args.client} client; {CONCURRENCY} connections for conc{CONCURRENCY}/s")
            if args.baseline_tree is not None:
                print(f"base: media-api from {args.baseline_tree}")
            figures, presigns, profile = asyncio.run(
                measure(
                    arms,
                    args.client,
                    issuer.mint("bench-user", ttl_seconds=3600),
                    store,
                    tmp if args.profile else None,
                )
            )
            print(f"load average at end {Path('/proc/loadavg').read_text().split()[:3]}\n")
            report(figures, presigns, arms)
            if profile is not None:
                show_profile(
                    "one placeholder, `again`", profile, statistics.median(figures["again", 1].server_us)
                )
        finally:
            store.close()


if __name__ == "__main__":
    main()
