"""Benchmark: response-api's overhead per tool round.

Two arms run the same scripted work, interleaved, against the same loopback fakes:

- baseline: a client does the work itself: it streams each model round straight from the fake model
  (OpenAI chat completions) and calls each tool over one MCP session it keeps open for the whole run
  (same SDK, same stateless protocol as response-api);
- ours: the client sends one `POST /v1/responses` and response-api does the same rounds (through its
  llm-api client and its own MCP session), authenticates the caller, records the response and
  every tool execution in Postgres, and creates or extends the response's conversation (llm-api's
  conversation endpoints, answered in memory beside the fake model: response-api's HTTP calls are
  real, llm-api's database work is not measured here).

A script with R tool rounds is R model replies that each call the cheap `add` tool, then one answer.
The overhead of a request is ours minus baseline for the same script. Per round it is reported two
ways: that overhead divided by R, and the marginal cost of a round: the overhead's growth from one
round to the largest R, divided by the extra rounds. The marginal figure leaves out what a response
pays once: auth, the database write, and, at its first tool call, opening its MCP session.

Topology: by default response-api runs in this process, beside the fakes and the client (one
GIL: its thread waits for theirs, and they for it, which the baseline arm, with one thread fewer,
pays less). With `--process`, response-api runs as a container runs it (`jan-server serve
response-api`, its own process) from this checkout or from another one (`--process /work/main`,
for an A/B with the same bench), and the table adds response-api's CPU per response (all its
threads, from /proc), which holds on a machine shared with other work where wall times do not.

`--ttft` measures instead a streamed response without tools that starts a new conversation: the
time to its first event and first text delta (the new conversation is made before its id is
announced, `services/responses.py`).

Run: `.venv/bin/python -m bench.responses_loop [--samples N] [--process [CHECKOUT]] [--ttft]`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import orjson
from fastapi import FastAPI, Request
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from apps.common.migrations import upgrade
from apps.gateway.embedded import embedded_postgres
from apps.response_api.main import create_app
from apps.response_api.settings import ResponseApiSettings
from bench.cpu import cpu_ns
from bench.served import served_app
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_tools_fake import FakeMcpTools
from tests.harness.server import ServerThread, serve
from tests.harness.upstream import FakeUpstream, Reply

ROUNDS = (0, 1, 5)
WARMUP = 5


def with_conversations(model: FastAPI, create_seconds: float = 0.0) -> FastAPI:
    """llm-api as response-api reaches it: the fake model, plus conversations kept in memory.
    `create_seconds`: how long making a new conversation takes (llm-api's commit, say)."""
    app = FastAPI()
    conversations: dict[str, list[Any]] = {}

    @app.post("/v1/conversations")
    async def create() -> dict[str, Any]:
        conversation_id = f"conv_bench{len(conversations)}"
        conversations[conversation_id] = []
        return {"id": conversation_id, "object": "conversation"}

    @app.post("/internal/conversations/{conversation_id}/items")
    async def append(conversation_id: str, request: Request, create: bool = False) -> dict[str, Any]:
        if create:  # the response's new conversation, named by response-api
            if create_seconds:
                await asyncio.sleep(create_seconds)
            conversations.setdefault(conversation_id, [])
        conversations[conversation_id].extend((await request.json())["items"])
        return {"object": "list", "data": [], "has_more": False}

    app.mount("/", model)
    return app


def script(rounds: int) -> list[Reply]:
    calls = [
        Reply(
            content="",
            tool_calls=[
                {
                    "id": f"c{n}",
                    "type": "function",
                    "function": {"name": "add", "arguments": f'{{"a":{n},"b":1}}'},
                }
            ],
        )
        for n in range(rounds)
    ]
    return [*calls, Reply(content="The final answer is here.")]


class Baseline:
    """The client doing the rounds itself: model streams and tool calls, nothing else."""

    def __init__(self, http: httpx.AsyncClient, model_url: str, session: ClientSession) -> None:
        self.http = http
        self.url = f"{model_url}/v1/chat/completions"
        self.session = session

    async def run(self) -> None:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "bench"}]
        while True:
            calls = await self._round(messages)
            if not calls:
                return
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            for call in calls:
                result = await self.session.call_tool(
                    call["function"]["name"], orjson.loads(call["function"]["arguments"])
                )
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": str(result.content[0])}
                )

    async def _round(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"model": "fake-model", "messages": messages, "stream": True}
        calls: dict[int, dict[str, Any]] = {}
        async with self.http.stream("POST", self.url, content=orjson.dumps(body)) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in orjson.loads(line[6:])["choices"]:
                    for delta in choice["delta"].get("tool_calls") or ():
                        call = calls.setdefault(delta["index"], {"function": {"name": "", "arguments": ""}})
                        call["id"] = delta.get("id") or call.get("id")
                        call["type"] = "function"
                        call["function"]["name"] += delta.get("function", {}).get("name") or ""
                        call["function"]["arguments"] += delta.get("function", {}).get("arguments") or ""
        return list(calls.values())


async def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    await action()
    return (time.perf_counter() - start) * 1000


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    upstream: FakeUpstream, baseline: Baseline, ours: httpx.AsyncClient, samples: int, api_pid: int | None
) -> dict[tuple[str, int], list[float]]:
    """Times per (arm, rounds); arms and scripts are interleaved so drift hits them all alike.
    With `api_pid`, also response-api's CPU per response (`("cpu", rounds)`, in ms)."""
    cpu: list[float] = []

    async def run_ours(rounds: int) -> None:
        reply = await ours.post(
            "/v1/responses", content=orjson.dumps({"model": "fake-model", "input": "bench"})
        )
        body = reply.json()
        if reply.status_code != 200 or body["status"] != "completed" or len(body["output"]) != rounds + 1:
            raise RuntimeError(f"unexpected response: {reply.status_code} {body}")

    async def ours_with_cpu(rounds: int) -> None:
        assert api_pid is not None
        before = cpu_ns(api_pid)
        await run_ours(rounds)
        cpu.append((cpu_ns(api_pid) - before) / 1e6)

    results: dict[tuple[str, int], list[float]] = {
        (arm, r): [] for arm in ("baseline", "ours", "cpu") for r in ROUNDS
    }
    for sample in range(WARMUP + samples):
        for rounds in ROUNDS:
            arms: list[tuple[str, Callable[[], Any]]] = [
                ("baseline", baseline.run),
                ("ours", functools.partial(run_ours, rounds)),
            ]
            if sample % 2:
                arms.reverse()
            for name, action in arms:
                upstream.enqueue(*script(rounds))
                elapsed = await timed(action)
                if sample >= WARMUP:
                    results[name, rounds].append(elapsed)
            if api_pid is not None:  # CPU apart from the timed runs: reading /proc costs the client
                upstream.enqueue(*script(rounds))
                await ours_with_cpu(rounds)
                if sample >= WARMUP:
                    results["cpu", rounds].append(cpu.pop())
    return results


async def bench(setup: Loopback, samples: int) -> None:
    model_url, mcp_url, api_url, token, upstream = (
        setup.model_url,
        setup.mcp_url,
        setup.api_url,
        setup.token,
        setup.upstream,
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with (
        httpx.AsyncClient(timeout=60) as http,
        httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as ours,
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as mcp_http,
        streamable_http_client(f"{mcp_url}/v1/mcp", http_client=mcp_http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.discover()  # the same protocol response-api speaks
        results = await measure(upstream, Baseline(http, model_url, session), ours, samples, setup.api_pid)
    report(results, samples, setup.topology)


async def first_event(setup: Loopback, samples: int, model_seconds: float = 0.0) -> None:
    """`--ttft`: a streamed response with no tools, which starts a new conversation: the time to its
    first event (`response.created`), to its first text delta, and to its end, and response-api's
    CPU per response. Making the new conversation (one llm-api call) happens before the first event
    or alongside the model round, depending on the code under test."""
    headers = {"Authorization": f"Bearer {setup.token}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": "fake-model", "input": "bench", "tools": [], "stream": True})
    times: dict[str, list[float]] = {"first event": [], "first delta": [], "end": [], "api cpu": []}
    async with httpx.AsyncClient(base_url=setup.api_url, headers=headers, timeout=60) as ours:
        for sample in range(WARMUP + samples):
            setup.upstream.enqueue(Reply(content="The final answer is here.", first_byte_delay=model_seconds))
            before = cpu_ns(setup.api_pid) if setup.api_pid is not None else 0
            start = time.perf_counter()
            marks: dict[str, float] = {}
            async with ours.stream("POST", "/v1/responses", content=body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    now = (time.perf_counter() - start) * 1000
                    kind = orjson.loads(line[6:])["type"]
                    marks.setdefault("first event", now)
                    if kind == "response.output_text.delta":
                        marks.setdefault("first delta", now)
                    if kind == "response.completed":
                        marks["end"] = now
            if setup.api_pid is not None:
                marks["api cpu"] = (cpu_ns(setup.api_pid) - before) / 1e6
            if set(marks) < {"first event", "first delta", "end"}:
                raise RuntimeError(f"unexpected stream: {marks}")
            if sample >= WARMUP:
                for name, value in marks.items():
                    times[name].append(value)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"responses_loop --ttft: {samples} streamed 0-round responses, new conversation, concurrency 1")
    print(f"response-api: {setup.topology}; load {load}; times in ms")
    print(
        f"model's first byte after {model_seconds * 1000:.1f} ms; "
        f"a new conversation takes +{setup.create_ms} ms"
    )
    for name, values in times.items():
        if values:
            cells = "  ".join(f"p{round(q * 100)} {p(values, q):7.2f}" for q in (0.5, 0.9, 0.99))
            print(f"{name:>12}: {cells}")


def report(results: dict[tuple[str, int], list[float]], samples: int, topology: str) -> None:
    overhead = {
        r: [o - b for o, b in zip(results["ours", r], results["baseline", r], strict=True)] for r in ROUNDS
    }
    print(f"responses_loop: {samples} samples per arm and script, {WARMUP} warm-up, concurrency 1")
    print(f"response-api: {topology}")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {load}; times in ms")
    names = ("rounds", "base p50", "ours p50", "ovh p50", "ovh p99", "ovh/round p50", "ours/base")
    columns: tuple[str, ...] = names
    with_cpu = bool(results["cpu", ROUNDS[0]])
    if with_cpu:
        columns = (*columns, "api cpu p50", "api cpu p99")
    print(" ".join(f"{name:>13}" for name in columns))
    for r in ROUNDS:
        base, ours = p(results["baseline", r], 0.5), p(results["ours", r], 0.5)
        per_round = statistics.median(o / r for o in overhead[r]) if r else float("nan")
        values = [base, ours, p(overhead[r], 0.5), p(overhead[r], 0.99), per_round, ours / base]
        if with_cpu:
            values += [p(results["cpu", r], 0.5), p(results["cpu", r], 0.99)]
        print(" ".join(f"{cell:>13}" for cell in (f"{r}", *(f"{v:.2f}" for v in values))))
    first, last = ROUNDS[1], ROUNDS[-1]
    marginal = [
        (late - early) / (last - first) for late, early in zip(overhead[last], overhead[first], strict=True)
    ]
    fixed = p(overhead[0], 0.5)
    print(f"fixed overhead per response (0 rounds), p50: {fixed:.2f} ms")
    print(f"first tool round incl. opening the MCP session, p50: {p(overhead[first], 0.5) - fixed:.2f} ms")
    print(
        f"marginal overhead per further tool round: p50 {p(marginal, 0.5):.2f} ms, "
        f"p90 {p(marginal, 0.9):.2f} ms (target p50 < 5 ms)"
    )


@dataclass(frozen=True)
class Loopback:
    api_url: str
    model_url: str
    mcp_url: str
    token: str
    upstream: FakeUpstream
    api: ServerThread | None = None  # response-api in this process
    api_pid: int | None = None  # response-api in its own process
    topology: str = "in the bench's process"
    create_ms: float = 0.0


@contextmanager
def loopback(checkout: Path | None = None, create_ms: float = 0.0) -> Iterator[Loopback]:
    """Embedded Postgres, the fake model with conversations, fake mcp-tools and response-api on
    loopback; response-api in this process, or with `checkout` in its own, run from there."""
    issuer, upstream, tools = TestIssuer(), FakeUpstream(), FakeMcpTools()
    with tempfile.TemporaryDirectory(prefix="jan-bench-") as tmp:
        os.chmod(tmp, 0o755)
        with (
            embedded_postgres(Path(tmp) / "pg") as postgres,
            serve(issuer.app) as issuer_server,
            serve(with_conversations(upstream.app, create_ms / 1000)) as model,
            serve(tools.app) as tools_server,
        ):
            issuer.url = issuer_server.url
            upstream.url = model.url
            upgrade("apps.response_api", postgres.url)
            settings = ResponseApiSettings(
                database_url=SecretStr(postgres.url),
                auth=issuer.auth_settings(),
                llm_api_url=model.url,
                mcp_tools_url=tools_server.url,
                log_level="WARNING",
            )
            token = issuer.mint("bench")
            if checkout is None:
                with serve(create_app(settings)) as api:
                    yield Loopback(
                        api.url, model.url, tools_server.url, token, upstream, api=api, create_ms=create_ms
                    )
                return
            env = {
                "DATABASE_URL": postgres.url,
                "AUTH__ISSUER": issuer.issuer,
                "AUTH__AUDIENCE": issuer.audience,
                "AUTH__JWKS_URL": issuer.jwks_url,
                "LLM_API_URL": model.url,
                "MCP_TOOLS_URL": tools_server.url,
                "LOG_LEVEL": "WARNING",
            }
            with served_app("response-api", env, Path(tmp) / "response-api.log", tree=checkout) as (url, pid):
                topology = f"its own process (jan-server serve), code from {checkout}"
                yield Loopback(
                    url,
                    model.url,
                    tools_server.url,
                    token,
                    upstream,
                    api_pid=pid,
                    topology=topology,
                    create_ms=create_ms,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--process",
        nargs="?",
        const=str(Path(__file__).resolve().parent.parent),
        default=None,
        metavar="CHECKOUT",
        help="run response-api as its own process, from this checkout (default) or CHECKOUT",
    )
    parser.add_argument("--ttft", action="store_true", help="time to first event of a streamed response")
    parser.add_argument("--model-ms", type=float, default=0.0, help="--ttft: the model's time to first byte")
    parser.add_argument(
        "--create-ms", type=float, default=0.0, help="time llm-api takes to make a conversation"
    )
    args = parser.parse_args()
    with loopback(Path(args.process) if args.process else None, args.create_ms) as setup:
        if args.ttft:
            asyncio.run(first_event(setup, args.samples, args.model_ms / 1000))
        else:
            asyncio.run(bench(setup, args.samples))


if __name__ == "__main__":
    main()
