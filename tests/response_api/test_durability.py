"""Fault injection: Postgres or mcp-tools stops while responses (plain, streamed, background) run.

The rule: a response is acknowledged (a plain 200, a stream's terminal `response.*` event, the 200
that returns a background response's id and, later, a poll that reads its ending) only for what is
stored. The model's first replies are held (`Reply.hold`) until every response is in flight; then
the dependency is really stopped (`pg_ctl stop`, or the mcp-tools server shut down), the replies are
let go, and the dependency is started again. Every client's outcome is read off the wire and every
acknowledged response is read back through the public API afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import SecretStr

from apps.gateway.embedded import EmbeddedPostgres, free_port
from apps.mcp_tools.main import create_app as create_mcp_tools
from apps.mcp_tools.settings import McpToolsSettings
from apps.response_api.main import create_app
from apps.response_api.settings import ResponseApiSettings
from tests.harness.issuer import TestIssuer
from tests.harness.response_api import MAX_DEPTH, MODEL, TOOL_TIMEOUT, Peers, auth_settings
from tests.harness.responses import KINDS, Outcome, assert_none_acknowledged_and_lost, create, poll
from tests.harness.sandbox import FakeSandbox
from tests.harness.server import serve
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import eventually_async as eventually
from tests.response_api.scripts import answer, call, tool_round
from tests.response_api.test_loop import executions

TEXT = ["Stored ", "or ", "refused."]


@contextmanager
def response_api(url: str, issuer: TestIssuer, peers: Peers, **overrides: Any) -> Iterator[str]:
    values: dict[str, Any] = {
        "database_url": SecretStr(url),
        "auth": auth_settings(issuer),  # with the internal token, for llm-api's conversations
        "llm_api_url": peers.llm_api_url,
        "mcp_tools_url": peers.mcp_tools_url,
        "max_tool_execution_depth": MAX_DEPTH,
        "tool_execution_timeout": TOOL_TIMEOUT,
        "log_format": "console",
        **overrides,
    }
    with serve(create_app(ResponseApiSettings(**values))) as server:
        yield server.url


async def start_all(
    http: httpx.AsyncClient, upstream: FakeUpstream, replies: list[Reply], per_kind: int, body: dict[str, Any]
) -> tuple[list[Outcome], list[asyncio.Task[Outcome]]]:
    """`per_kind` responses of each kind, all held at their first model round."""
    upstream.enqueue(*replies)
    outcomes = [Outcome(kind) for kind in KINDS for _ in range(per_kind)]
    tasks = [asyncio.create_task(create(http, outcome, {"model": MODEL, **body})) for outcome in outcomes]
    await eventually(lambda: len(upstream.requests) == len(outcomes), "every response reached the model")
    for outcome, task in zip(outcomes, tasks, strict=True):
        if outcome.kind == "background":  # its 200 came back before the model was asked
            await task
            assert outcome.id is not None and outcome.http_status == 200, outcome
    return outcomes, tasks


async def waiting_poll(http: httpx.AsyncClient, response_id: str) -> asyncio.Task[httpx.Response]:
    """A GET of a background response issued once its run has ended in memory, so it waits for the write.

    Until the run ends a GET answers at once with a running snapshot (which promises nothing); that
    snapshot must never show an ending the store does not have.
    """
    for _ in range(150):
        task = asyncio.create_task(http.get(f"/v1/responses/{response_id}"))
        await asyncio.sleep(0.2)
        if not task.done():
            return task
        snapshot = task.result().json()
        assert snapshot["status"] in ("queued", "in_progress"), snapshot
    raise AssertionError(f"{response_id} never ended in memory")


def headers(issuer: TestIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('durable')}"}


async def test_postgres_down_longer_than_the_retry_budget(
    own_postgres: EmbeddedPostgres, issuer: TestIssuer, peers: Peers, upstream: FakeUpstream
) -> None:
    hold = threading.Event()
    replies = [Reply(content=TEXT, hold=hold) for _ in range(6)]
    # The budget covers every write, the ones before the outage too: on a loaded machine 0.5 s was
    # once too short for the conversation's creation through llm-api, and nothing reached the model.
    with response_api(
        own_postgres.url, issuer, peers, storage_retry_seconds=3, background_storage_retry_seconds=60
    ) as url:
        async with httpx.AsyncClient(base_url=url, headers=headers(issuer), timeout=90) as http:
            outcomes, tasks = await start_all(http, upstream, replies, 2, {"input": "hi", "tools": []})
            await asyncio.to_thread(own_postgres.stop)
            try:
                hold.set()
                await asyncio.gather(
                    *(t for o, t in zip(outcomes, tasks, strict=True) if o.kind != "background")
                )
                # A background response cannot start while the database is away: the client is told.
                refused = await create(
                    http, Outcome("background"), {"model": MODEL, "input": "now?", "tools": []}
                )
                assert refused.http_status == 503 and refused.retry_after, refused
                assert refused.error is not None and refused.error["code"] == "storage_unavailable"
            finally:
                await asyncio.to_thread(own_postgres.start)
            for outcome in outcomes:
                if outcome.kind == "background":  # nobody waited: its end was retried until stored
                    await poll(http, outcome)
                    assert outcome.status == "completed"
                else:
                    assert not outcome.acknowledged and outcome.error is not None, outcome
                    assert outcome.error["code"] == "storage_unavailable", outcome
            for outcome in outcomes:
                if outcome.kind == "plain":
                    assert outcome.http_status == 503 and outcome.retry_after, outcome
                if outcome.kind == "stream":  # content first, never held back by storage
                    assert outcome.text == "".join(TEXT) and outcome.id is not None
            await assert_none_acknowledged_and_lost(http, outcomes)


async def test_a_short_postgres_outage_is_ridden_out(
    own_postgres: EmbeddedPostgres,
    issuer: TestIssuer,
    peers: Peers,
    upstream: FakeUpstream,
    database_url: str,
) -> None:
    hold = threading.Event()
    # Each response runs one tool round (recorded in `tool_executions`) and then answers.
    replies = [tool_round(call("add", {"a": 2, "b": 2}, f"c{n}")) for n in range(6)]
    for reply in replies:
        reply.hold = hold
    replies += [Reply(content=TEXT) for _ in range(6)]
    with response_api(own_postgres.url, issuer, peers, storage_retry_seconds=60) as url:
        async with httpx.AsyncClient(base_url=url, headers=headers(issuer), timeout=90) as http:
            outcomes, tasks = await start_all(http, upstream, replies, 2, {"input": "2 + 2?"})
            await asyncio.to_thread(own_postgres.stop)
            try:
                hold.set()
                streams = [o for o in outcomes if o.kind == "stream"]
                await eventually(lambda: all(o.text_done.is_set() for o in streams), "streams had their text")
                await eventually(lambda: len(upstream.requests) == 12, "every response had its answer")
                # A poll of a background response that ended in memory waits for its write.
                polls = [await waiting_poll(http, o.id) for o in outcomes if o.kind == "background" and o.id]
                await asyncio.sleep(0.2)
                assert not any(task.done() for task in tasks[:4])  # no acknowledgement yet
                assert not any(o.acknowledged for o in outcomes)
            finally:
                await asyncio.to_thread(own_postgres.start)
            await asyncio.gather(*tasks)
            for answered in await asyncio.gather(*polls):
                assert answered.status_code == 200
                if answered.json()["status"] != "completed":
                    # Handled late on a loaded machine, before its run ended: a running snapshot.
                    assert answered.json()["status"] in ("queued", "in_progress")
                    continue
                rows = await executions(own_postgres.url, answered.json()["id"])
                assert [row["tool_name"] for row in rows] == ["add"]  # stored with the ending
            for outcome in outcomes:
                if outcome.kind == "background":
                    await poll(http, outcome)
                assert outcome.acknowledged and outcome.status == "completed", outcome
                assert outcome.output_types == ["mcp_call", "message"]
            await assert_none_acknowledged_and_lost(http, outcomes)
    assert database_url  # the session's database was never touched by the outage


@contextmanager
def mcp_tools_on(
    port: int, database_url: str, issuer: TestIssuer, sandbox: FakeSandbox, upstream: FakeUpstream
) -> Iterator[str]:
    """The real mcp-tools app on a fixed port, so it can be stopped and started again."""
    settings = McpToolsSettings(
        database_url=SecretStr(database_url),
        auth=issuer.auth_settings(),
        sandbox_fusion_url=sandbox.url,
        sandbox_timeout_seconds=30.0,
        embeddings_url=upstream.base_url,
        embeddings_model="fake-embedding",
        mcp_providers_file=None,
        log_format="console",
    )
    with serve(create_mcp_tools(settings), port=port) as server:
        yield server.url


async def test_mcp_tools_stopped_during_tool_calls(
    database_url: str, issuer: TestIssuer, peers: Peers, upstream: FakeUpstream, sandbox: FakeSandbox
) -> None:
    port = free_port()
    hold = threading.Event()
    code = {"code": "print(6 * 7)"}
    replies = [tool_round(call("python_exec", code, f"p{n}")) for n in range(6)]
    for reply in replies:
        reply.hold = hold
    replies += [answer("The tool was away.") for _ in range(6)]
    mcp_url = f"http://127.0.0.1:{port}"
    with response_api(database_url, issuer, peers, mcp_tools_url=mcp_url) as url:
        async with httpx.AsyncClient(base_url=url, headers=headers(issuer), timeout=90) as http:
            with mcp_tools_on(port, database_url, issuer, sandbox, upstream):
                outcomes, tasks = await start_all(http, upstream, replies, 2, {"input": "compute"})
            # mcp-tools is down now, while every response is about to call it.
            hold.set()
            await asyncio.gather(*tasks)
            for outcome in outcomes:
                if outcome.kind == "background":
                    await poll(http, outcome)
            with mcp_tools_on(port, database_url, issuer, sandbox, upstream):
                for outcome in outcomes:  # each one completed, with its failed call visible, or failed
                    assert outcome.acknowledged or outcome.error is not None, outcome
                    assert outcome.status in ("completed", "failed"), outcome
                    rows = await executions(database_url, outcome.id or "")
                    if outcome.status == "completed":  # the model read the tool's failure and answered
                        assert outcome.output_types == ["mcp_call", "message"], outcome
                        assert [row["status"] for row in rows] == ["failed"], rows
                    else:  # the MCP session itself went down: the response says so
                        assert outcome.response_error is not None, outcome
                        assert outcome.response_error["code"] == "tools_unavailable", outcome
                        assert [row["status"] for row in rows] in ([], ["failed"]), rows
                await assert_none_acknowledged_and_lost(http, outcomes)
    assert not sandbox.requests  # no call got through to the sandbox
