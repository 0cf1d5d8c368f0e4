"""What `POST /v1/media/resolve` costs per placeholder, against a bare presign call in the same run.

Setup, all on loopback: an embedded Postgres (migrated), moto's S3 server, a JWKS issuer, and media-api
in its own uvicorn process. 100 images are uploaded through the API; then chat payloads carrying 0, 1,
10 and 100 `data:image/png;jan_<id>` placeholders (distinct ids) are resolved as llm-api would send them.

Arms, interleaved in rounds: resolve with k placeholders (sequential requests, one client), and the
baseline: one bare `generate_presigned_url` call in this process with the service's S3 configuration.
Reported: p50/p99 latency and resolves/s per k (sequential, and with 8 concurrent clients), and the
cost of one more placeholder, (p50(k) - p50(0)) / k, in microseconds and as a multiple of the bare
presign call; beside them the CPU time media-api's process spent per sequential resolve (bench.cpu:
unlike latency, it holds on a shared machine) and per extra placeholder.

Run: `.venv/bin/python -m bench.media_resolve [--profile]` (about a minute). `--profile` samples
media-api with py-spy over 1000 one-placeholder resolves (cache on) and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from apps.common.auth.issuer import LocalIssuer
from apps.common.migrations import upgrade
from apps.gateway.embedded import embedded_postgres, embedded_s3, free_port
from apps.media_api.services.storage import ObjectStore
from apps.media_api.settings import MediaApiSettings
from bench.cpu import cpu_ns, sampling, show_profile
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
JSON = {"Content-Type": "application/json"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8


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
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def media_api(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """media-api in its own uvicorn process: (its URL, its pid)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "apps.media_api.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded machine starts slowly
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"media-api exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("media-api did not become ready")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


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


async def timed_resolve(client: httpx.AsyncClient, body: bytes) -> float:
    started = time.perf_counter()
    response = await client.post("/v1/media/resolve", content=body, headers=JSON)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(response.text)
    return elapsed


async def concurrent_rate(client: httpx.AsyncClient, body: bytes) -> float:
    remaining = CONCURRENT_REQUESTS

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await timed_resolve(client, body)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
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


async def measure(url: str, pid: int, token: str, store: ObjectStore, profile_dir: Path | None) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        ids = await upload_images(client, max(SIZES))
        bodies = {k: payload(ids[:k]) for k in SIZES}
        keys = [f"media/{i[4:]}.png" for i in ids]
        for k in SIZES:  # warm-up
            for _ in range(10):
                await timed_resolve(client, bodies[k])
        presign_seconds(store, keys)
        latencies: dict[int, list[float]] = {k: [] for k in SIZES}
        cpu: dict[int, list[float]] = {k: [] for k in SIZES}  # µs per resolve, one figure per round
        presigns: list[float] = []
        for _ in range(ROUNDS):
            for k in SIZES:
                before = cpu_ns(pid)
                for _ in range(REQUESTS_PER_ROUND):
                    latencies[k].append(await timed_resolve(client, bodies[k]))
                cpu[k].append((cpu_ns(pid) - before) / REQUESTS_PER_ROUND / 1000)
            presigns += presign_seconds(store, keys)
        rates = {k: await concurrent_rate(client, bodies[k]) for k in SIZES}
        report(latencies, presigns, rates, cpu)
        if profile_dir is not None:
            async with sampling(pid, profile_dir / "resolve-1.txt") as output:
                for _ in range(PROFILED_RESOLVES):
                    await timed_resolve(client, bodies[1])
            show_profile("one placeholder", output, statistics.median(cpu[1]))


def report(
    latencies: dict[int, list[float]],
    presigns: list[float],
    rates: dict[int, float],
    cpu: dict[int, list[float]],
) -> None:
    presign_us = statistics.median(presigns) * 1e6
    base = statistics.median(latencies[0])
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}")
    print(f"rounds {ROUNDS} x {REQUESTS_PER_ROUND} sequential resolves per size; {CONCURRENCY} clients")
    print(f"bare presign (boto3): p50 {presign_us:.1f} us, p99 {p(presigns, 0.99) * 1e6:.1f} us")
    print()
    print(
        f"{'placeholders':>12} {'p50 ms':>8} {'p99 ms':>8} {'seq/s':>8} {f'conc{CONCURRENCY}/s':>9} "
        f"{'us/placeholder':>15} {'x presign':>10} {'CPU us':>8} {'CPU us/ph':>10}"
    )
    cpu_base = statistics.median(cpu[0])
    for k in SIZES:
        median = statistics.median(latencies[k])
        per = (median - base) / k * 1e6 if k else float("nan")
        ratio = per / presign_us if k else float("nan")
        cpu_us = statistics.median(cpu[k])
        cpu_per = (cpu_us - cpu_base) / k if k else float("nan")
        print(
            f"{k:>12} {median * 1e3:>8.2f} {p(latencies[k], 0.99) * 1e3:>8.2f} {1 / median:>8.0f} "
            f"{rates[k]:>9.0f} {per:>15.1f} {ratio:>10.2f} {cpu_us:>8.0f} {cpu_per:>10.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true", help="sample media-api with py-spy")
    args = parser.parse_args()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jan-bench-media-")))
        os.chmod(tmp, 0o755)
        database_url = stack.enter_context(embedded_postgres(tmp / "pg")).url
        upgrade("apps.media_api", database_url)
        s3 = stack.enter_context(embedded_s3())
        issuer = LocalIssuer.generate("https://bench.test", AUDIENCE)
        jwks = stack.enter_context(serve(jwks_app(issuer)))
        env = media_env(database_url, s3, jwks.url)
        # Two media-api processes on the same data: resolve without its ready-id cache (the
        # baseline: one query per request) and with it (MEDIA_RESOLVE_CACHE_SECONDS, default 10).
        arms = {
            "cache off": stack.enter_context(media_api({**env, "MEDIA_RESOLVE_CACHE_SECONDS": "0"})),
            "cache on": stack.enter_context(media_api(env)),
        }
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
            print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
            for name, (url, pid) in arms.items():
                print(f"\n## resolve, {name}")
                profile_dir = tmp if args.profile and name == "cache on" else None
                asyncio.run(measure(url, pid, issuer.mint("bench-user"), store, profile_dir))
        finally:
            store.close()


if __name__ == "__main__":
    main()
