"""What llm-api adds to a chat completion, against the same fake upstream, beside LiteLLM's proxy.

Four arms, all on loopback, in one run: (a) direct to the fake upstream, (b) through llm-api (one
uvicorn process, JWT auth, no conversation), (b') the same llm-api with every request continuing a
conversation (`llm-api+conv`: the conversation and its recent history are read first, and the turn
is committed before the 200 or the `[DONE]`; requests cycle over 64 conversations, so concurrent
streams do not queue on one conversation's lock), (c) through the LiteLLM proxy (one process, no DB,
installed by this script into `.bench/litellm` with `pip install 'litellm[proxy]==1.108.7'`, started
with `LITELLM_LOCAL_MODEL_COST_MAP=True` so it stays offline). Arms are interleaved in rounds.

Measured: plain request latency p50/p99 (sequential), time to first streamed chunk p50/p99
(sequential), and content chunks per second with 32 concurrent streams; "added" is an arm's figure
minus the direct arm's. Also the resident memory (VmRSS, and VmHWM = peak) of the llm-api process.

Stream throughput is measured at two upstream paces: 50 tokens/s per stream (20 ms between chunks,
a typical GPU decode speed; this is the figure the target applies to: does the proxy keep up with
32 real streams?) and 200 tokens/s (5 ms; a stress figure where, on a small machine, the client, the
upstream and the proxy compete for the same cores). At that pace the benchmark's own client is the
bottleneck, and a proxy that forwards several chunks in one write (whatever arrived together) can
even beat the direct arm; read it as "does not fall over", not as a ratio to optimise.

Run: `.venv/bin/python -m bench.chat_overhead` (about three minutes, plus the first LiteLLM install;
`--without-litellm` leaves that arm out; `--baseline-tree DIR` adds `base llm-api` and
`base llm-api+conv`, an llm-api run from another checkout beside this one).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from apps.common.auth.issuer import LocalIssuer
from apps.common.http import DEFAULT_KEEPALIVE
from apps.common.migrations import upgrade
from apps.gateway.embedded import embedded_postgres, free_port, stop_process, wait_ready
from bench.cpu import voluntary_switches

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".bench" / "litellm"
LITELLM_SPEC = "litellm[proxy]==1.108.7"
AUDIENCE = "jan-bench"
ROUNDS = 10
PLAIN_PER_ROUND = 40
TTFT_PER_ROUND = 15
STREAM_CHUNKS_TTFT = 4
CONCURRENT_STREAMS = 32
STREAM_CHUNKS_LOAD = 100
LOAD_WAVES = 3
PACES = {"50 tok/s": "fake-model-50tps", "200 tok/s": "fake-model"}  # upstream model per pace
MESSAGES = [{"role": "user", "content": "Say hello."}]
CONVERSATIONS = 64


@dataclass
class Arm:
    name: str
    url: str
    prefix: str  # how this arm names the upstream's models
    headers: dict[str, str]
    plain: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    rates: dict[str, list[float]] = field(default_factory=lambda: {pace: [] for pace in PACES})
    client: httpx.AsyncClient | None = None
    extra: Callable[[], dict[str, Any]] = dict  # fields added to every request body
    # Processes on this arm's path: their sleeps (voluntary context switches) are counted over the
    # plain requests. Each sleep is a wake-up later, and on an idle VM a wake-up of a halted vCPU
    # costs far more than the CPU work around it.
    pids: dict[str, int] = field(default_factory=dict)
    sleeps: dict[str, int] = field(default_factory=dict)


@contextmanager
def _process(command: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    # Output goes to a file, not a pipe: nobody reads a pipe while the bench runs, and a server that
    # logs 64 KiB under load (the pipe's buffer) would block in its next write and stop answering.
    # Both streams are kept (apps log to stdout), so an error seen by a client has the server's trace.
    log = tempfile.NamedTemporaryFile(prefix="jan-bench-", suffix=".log", delete=False)
    with log:
        process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        stop_process(process)
        lines = Path(log.name).read_text(errors="replace").splitlines()
        if lines:
            print(f"{' '.join(command[1:4])}: {len(lines)} lines of output, kept in {log.name}", flush=True)
        else:
            os.unlink(log.name)


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"installing {LITELLM_SPEC} into {LITELLM_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC], check=True)
    return binary


def start_upstream(stack: ExitStack, pids: dict[str, int] | None = None) -> str:
    """The fake upstream's base URL; its pid goes into `pids["upstream"]` when a dict is given."""
    port = free_port()
    process = stack.enter_context(_process([sys.executable, "-m", "bench.fake_upstream", str(port)]))
    if pids is not None:
        pids["upstream"] = process.pid
    wait_ready(f"http://127.0.0.1:{port}/v1/models", process, 30)
    return f"http://127.0.0.1:{port}/v1"


@dataclass
class LlmApiProcess:
    base: str
    issuer: LocalIssuer
    database_url: str
    pid: int


def launch_llm_api(
    stack: ExitStack, tmp: Path, upstream: str, extra: dict[str, str] | None = None
) -> LlmApiProcess:
    """llm-api as one uvicorn process on its own embedded Postgres, in front of `upstream`."""
    database = stack.enter_context(embedded_postgres(tmp / "pg"))
    upgrade("apps.llm_api", database.url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key_file = tmp / "issuer-key.pem"
    issuer = LocalIssuer.from_key_file(key_file, base, AUDIENCE)
    env = {
        "DATABASE_URL": database.url,
        "LOCAL_ISSUER_KEY_FILE": str(key_file),
        "AUTH__ISSUER": base,
        "AUTH__AUDIENCE": AUDIENCE,
        "AUTH__JWKS_URL": f"{base}/.well-known/jwks.json",
        "DEFAULT_PROVIDER_URL": upstream,
        "DEFAULT_PROVIDER_NAME": "bench",
        "MODEL_SYNC_INTERVAL_SECONDS": "0",
        **(extra or {}),
    }
    command = [
        # What a container runs (`jan-server serve`): the same server settings and JSON logging.
        *(sys.executable, "-m", "apps.cli", "serve", "llm-api", "--host", "127.0.0.1", "--port", str(port)),
    ]
    process = stack.enter_context(_process(command, env))
    wait_ready(f"{base}/readyz", process, 60)
    return LlmApiProcess(base, issuer, database.url, process.pid)


def launch_checkouts(
    stack: ExitStack, tmp: Path, upstream: str, baseline_tree: Path | None, extra: dict[str, str]
) -> dict[str, LlmApiProcess]:
    """llm-api from this checkout (label "") and, with `baseline_tree`, from that one ("base-", started
    first), each in `tmp / (label or "ours")` on its own Postgres."""
    trees = {"": None} if baseline_tree is None else {"base-": baseline_tree, "": None}
    processes = {}
    for label, tree in trees.items():
        directory = tmp / (label or "ours")
        directory.mkdir(mode=0o755)
        # PYTHONSAFEPATH: `python -m` would otherwise import this checkout (the cwd) first.
        env = {**extra, "PYTHONSAFEPATH": "1"}
        if tree is not None:
            env["PYTHONPATH"] = str(tree.resolve())
        processes[label] = launch_llm_api(stack, directory, upstream, env)
    return processes


# One benchmark user drives every client: admission's bounds are raised to let them all in (the point
# is the proxy's cost, not its refusals; `bench.load` measures those).
ONE_USER_LIMITS = {"ADMISSION__MAX_CONCURRENT": "128", "ADMISSION__MAX_CONCURRENT_PER_USER": "128"}


def start_llm_api(
    stack: ExitStack, tmp: Path, upstream: str, extra: dict[str, str] | None = None
) -> tuple[Arm, int]:
    llm_api = launch_llm_api(stack, tmp, upstream, extra)
    headers = {"Authorization": f"Bearer {llm_api.issuer.mint('bench-user', ttl_seconds=3600 * 4)}"}
    return Arm("llm-api", llm_api.base + "/v1", "bench/", headers), llm_api.pid


def start_litellm(stack: ExitStack, tmp: Path, upstream: str, pids: dict[str, int] | None = None) -> Arm:
    """LiteLLM's proxy in front of `upstream`; its pid goes into `pids["litellm"]` when a dict is given."""
    binary = ensure_litellm()
    config = tmp / "litellm.yaml"
    models = "".join(
        f"  - model_name: litellm-{model}\n"
        f"    litellm_params: {{model: openai/{model}, api_base: '{upstream}', api_key: sk-upstream}}\n"
        for model in PACES.values()
    )
    config.write_text(
        "model_list:\n" + models + "litellm_settings: {telemetry: false, drop_params: true}\n"
        "general_settings: {master_key: sk-master}\n"
    )
    port = free_port()
    command = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    process = stack.enter_context(
        _process(command, {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"})
    )
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", process, 300)  # slow to import on a busy box
    if pids is not None:
        pids["litellm"] = process.pid
    return Arm("litellm", f"http://127.0.0.1:{port}/v1", "litellm-", {"Authorization": "Bearer sk-master"})


async def plain_once(arm: Arm) -> float:
    assert arm.client is not None
    started = time.perf_counter()
    response = await arm.client.post(
        "/chat/completions", json={"model": arm.prefix + "fake-model", "messages": MESSAGES, **arm.extra()}
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or b"Hello from the bench." not in response.content:
        raise RuntimeError(f"{arm.name}: {response.status_code} {response.text[:200]}")
    return elapsed


async def stream_once(arm: Arm, chunks: int, model: str = "fake-model") -> tuple[float, int]:
    """(seconds to the first chunk, content chunks received)."""
    assert arm.client is not None
    body = {
        "model": arm.prefix + model,
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": chunks,
        **arm.extra(),
    }
    started = time.perf_counter()
    first = 0.0
    count = 0
    async with arm.client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{arm.name}: {response.status_code} {(await response.aread())[:200]!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"tok ' in line:
                if not count:
                    first = time.perf_counter() - started
                count += 1
            elif line.startswith("data: ") and '"error"' in line:
                raise RuntimeError(f"{arm.name}: {line[:200]}")
    if count != chunks:
        raise RuntimeError(f"{arm.name}: {count} of {chunks} chunks")
    return first, count


async def load_wave(arm: Arm, model: str) -> float:
    started = time.perf_counter()
    waves = (stream_once(arm, STREAM_CHUNKS_LOAD, model) for _ in range(CONCURRENT_STREAMS))
    results = await asyncio.gather(*waves)
    return sum(count for _, count in results) / (time.perf_counter() - started)


def with_conversations(arm: Arm) -> Arm:
    """The llm-api arm again, each request continuing one of `CONVERSATIONS` conversations in turn."""
    with httpx.Client(base_url=arm.url, headers=arm.headers, timeout=30) as client:
        ids = [client.post("/conversations", json={}).json()["id"] for _ in range(CONVERSATIONS)]
    cycle = itertools.cycle(ids)
    extra = lambda: {"conversation": next(cycle)}  # noqa: E731
    return Arm(f"{arm.name}+conv", arm.url, arm.prefix, arm.headers, extra=extra, pids=dict(arm.pids))


async def measure(arms: list[Arm], llm_api_pid: int) -> list[int]:
    rss_samples: list[int] = []
    for arm in arms:
        # Idle connections dropped before the servers' 5 s keep-alive (httpx keeps them 5 s too): a
        # connection reused as the server closes it fails with ReadError or RemoteProtocolError.
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=DEFAULT_KEEPALIVE
        )
        arm.client = httpx.AsyncClient(base_url=arm.url, headers=arm.headers, timeout=60, limits=limits)
    try:
        for arm in arms:  # warm-up: connections, caches, lazy imports
            for _ in range(20):
                await plain_once(arm)
                await stream_once(arm, STREAM_CHUNKS_TTFT)
            await load_wave(arm, "fake-model")
        for round_number in range(ROUNDS):
            order = arms[round_number % len(arms) :] + arms[: round_number % len(arms)]
            for arm in order:
                before = {name: voluntary_switches(pid) for name, pid in arm.pids.items()}
                arm.plain.extend([await plain_once(arm) for _ in range(PLAIN_PER_ROUND)])
                for name, pid in arm.pids.items():
                    arm.sleeps[name] = arm.sleeps.get(name, 0) + voluntary_switches(pid) - before[name]
                arm.ttft.extend(
                    [(await stream_once(arm, STREAM_CHUNKS_TTFT))[0] for _ in range(TTFT_PER_ROUND)]
                )
            rss_samples.append(_rss_kib(llm_api_pid, "VmRSS"))
        for wave in range(LOAD_WAVES):
            order = arms[wave % len(arms) :] + arms[: wave % len(arms)]
            for arm in order:
                for pace, model in PACES.items():
                    arm.rates[pace].append(await load_wave(arm, model))
                    rss_samples.append(_rss_kib(llm_api_pid, "VmRSS"))
    finally:
        for arm in arms:
            assert arm.client is not None
            await arm.client.aclose()
    return rss_samples


def _cpuidle() -> str:
    """The idle driver: how a sleeping core wakes (a VM's `haltpoll` without polling exits to the host)."""
    driver = Path("/sys/devices/system/cpu/cpuidle/current_driver")
    return f", cpuidle {driver.read_text().strip()}" if driver.exists() else ""


def _rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


COLUMNS = ("arm", "p50 ms", "p99 ms", "+p50", "+p99", "ttft50", "ttft99", "+ttft50")
NAME_WIDTH = 18


def report(arms: list[Arm], rss_kib: int, peak_kib: int) -> None:
    direct = arms[0]
    base = (pct(direct.plain, 0.5), pct(direct.plain, 0.99), pct(direct.ttft, 0.5))
    print(
        f"\nmachine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
        f"{_cpuidle()}, loadavg {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
    )
    print(f"plain: {ROUNDS}x{PLAIN_PER_ROUND} sequential requests per arm")
    print(f"ttft: {ROUNDS}x{TTFT_PER_ROUND} sequential streams of {STREAM_CHUNKS_TTFT} chunks per arm")
    print(
        f"load: {LOAD_WAVES} waves per arm and pace of {CONCURRENT_STREAMS} concurrent streams x "
        f"{STREAM_CHUNKS_LOAD} chunks; arms interleaved in rounds"
    )
    print(
        "\n"
        + f"{COLUMNS[0]:>{NAME_WIDTH}}"
        + "".join(f"{c:>9}" for c in COLUMNS[1:])
        + "".join(f"{p:>20}" for p in PACES)
    )
    added: dict[str, tuple[float, float, float]] = {}
    throughput: dict[str, dict[str, float]] = {}
    for arm in arms:
        p50, p99, t50 = pct(arm.plain, 0.5), pct(arm.plain, 0.99), pct(arm.ttft, 0.5)
        added[arm.name] = (p50 - base[0], p99 - base[1], t50 - base[2])
        row = [p50, p99, p50 - base[0], p99 - base[1], t50, pct(arm.ttft, 0.99), t50 - base[2]]
        rates = {pace: statistics.median(arm.rates[pace]) for pace in PACES}
        throughput[arm.name] = {pace: rates[pace] / statistics.median(direct.rates[pace]) for pace in PACES}
        cells = "".join(f"{rates[p]:>9.0f} c/s ({throughput[arm.name][p]:.2f})" for p in PACES)
        print(f"{arm.name:>{NAME_WIDTH}}" + "".join(f"{v:9.2f}" for v in row) + cells)
    print("\nsleeps per plain request (voluntary context switches; each is a wake-up on the path):")
    for arm in arms:
        if arm.sleeps:
            per_request = ", ".join(f"{n} {v / len(arm.plain):.2f}" for n, v in arm.sleeps.items())
            print(f"  {arm.name:>{NAME_WIDTH}}: {per_request}")
    target_pace, stress_pace = PACES
    for name in ("llm-api", "base llm-api"):
        if name not in added:
            continue
        plain, conv = added[name], added[f"{name}+conv"]
        print(
            f"\nwhat a conversation costs ({name}+conv minus {name}; reads, history, commit before the ack):"
        )
        p50, p99 = conv[0] - plain[0], conv[1] - plain[1]
        print(f"  plain p50 / p99                    = +{p50:.2f} ms / +{p99:.2f} ms (target p50 <= 3 ms)")
        print(f"  ttft p50 (the reads before the model) = +{conv[2] - plain[2]:.2f} ms")
        for pace in PACES:
            ratio = throughput[f"{name}+conv"][pace] / throughput[name][pace]
            print(f"  32 streams at {pace}, / {name}     = {ratio:.3f}")
    if "litellm" not in added:
        return
    ours, peer = added["llm-api"], added["litellm"]
    p50_ratio = ours[0] / peer[0] if peer[0] > 0 else float("nan")
    p99_ratio = ours[1] / peer[1] if peer[1] > 0 else float("nan")
    ours_rate, peer_rate = throughput["llm-api"], throughput["litellm"]
    peak_mb = peak_kib / 1024
    print("\nratios and targets (c/s = content chunks per second, in brackets: / direct):")
    print(f"  added p50, llm-api / litellm       = {p50_ratio:.3f} (target <= 0.25) {_ok(p50_ratio <= 0.25)}")
    print(f"  added p99, llm-api / litellm       = {p99_ratio:.3f}")
    print(
        f"  added ttft p50, llm-api / litellm  = {ours[2]:.2f} ms / {peer[2]:.2f} ms "
        f"(target <= 3 ms) {_ok(ours[2] <= 3)}"
    )
    print(
        f"  32 streams at {target_pace}, / direct = {ours_rate[target_pace]:.3f} (target >= 0.90) "
        f"{_ok(ours_rate[target_pace] >= 0.9)}; litellm {peer_rate[target_pace]:.3f}"
    )
    print(
        f"  32 streams at {stress_pace}, / direct = {ours_rate[stress_pace]:.3f}; "
        f"litellm {peer_rate[stress_pace]:.3f}"
    )
    print(
        f"  llm-api RSS after load, peak       = {rss_kib / 1024:.0f} MB, {peak_mb:.0f} MB "
        f"(target < 200 MB) {_ok(peak_mb < 200)}"
    )


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="jan-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # pgserver runs as an unprivileged user when this runs as root
        pids: dict[str, int] = {}
        upstream = start_upstream(stack, pids)
        llm_api, pid = start_llm_api(stack, tmp, upstream, ONE_USER_LIMITS)
        llm_api.pids = {"llm-api": pid, **pids}
        direct = Arm("direct", upstream, "", {}, pids=dict(pids))
        arms = [direct, llm_api, with_conversations(llm_api)]
        if "--baseline-tree" in sys.argv:  # another checkout's llm-api beside this one, same upstream
            tree = Path(sys.argv[sys.argv.index("--baseline-tree") + 1]).resolve()
            (tmp / "base").mkdir(mode=0o755)
            env = {**ONE_USER_LIMITS, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}
            base, base_pid = start_llm_api(stack, tmp / "base", upstream, env)
            base.name = "base llm-api"
            base.pids = {"llm-api": base_pid, **pids}
            arms += [base, with_conversations(base)]
            print(f"base llm-api*: from {tree}; the others from this checkout")
        if "--without-litellm" not in sys.argv:
            arms.append(start_litellm(stack, tmp, upstream))
        print("measuring ...", flush=True)
        samples = asyncio.run(measure(arms, pid))
        report(arms, samples[-1], _rss_kib(pid, "VmHWM"))


if __name__ == "__main__":
    main()
