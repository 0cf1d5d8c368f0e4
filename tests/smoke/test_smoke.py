"""`jan-server smoke` against the local apps: every step passes; with mcp-tools down the MCP step fails."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from apps.cli import main
from apps.gateway.routes import AppName
from apps.smoke import passed, print_table, run_smoke
from tests.harness.server import serve_local
from tests.harness.upstream import FakeUpstream, Reply
from tests.harness.waiting import CLIENT_TIMEOUT
from tests.response_api.scripts import answer, call, tool_round


def script_a_user_session(upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Reply(content="Hello there, nice to meet you."),
        Reply(content=["Here ", "is ", "one ", "more."]),
        tool_round(call("file_search_query", {"query": "jan-server smoke test"}, "smoke-1")),
        answer("Your documents hold nothing about that yet."),
    )


async def test_every_step_passes_against_the_local_apps(
    database_url: str, s3_endpoint: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    script_a_user_session(upstream)
    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) as http:
            token = (await http.post("/v1/auth/guest-login")).json()["access_token"]
            results = await run_smoke(url, credential=token, timeout=120)
            table = io.StringIO()
            print_table(results, table)
            assert passed(results), table.getvalue()
            assert [r.name for r in results][-1] == "cleanup"

            # Cleanup removed what the run made, and the run made nothing else.
            auth = {"Authorization": f"Bearer {token}"}
            assert (await http.get("/v1/conversations", headers=auth)).json()["data"] == []
            assert (await http.get("/v1/media", headers=auth)).json()["data"] == []
    offered = upstream.requests[2]["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["file_search_query"]


def test_a_stopped_mcp_tools_fails_the_mcp_step_and_the_command(
    database_url: str,
    s3_endpoint: str,
    upstream: FakeUpstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script_a_user_session(upstream)
    down = frozenset({AppName.MCP_TOOLS})
    with serve_local(database_url, s3_endpoint, tmp_path, model_url=upstream.base_url, stopped=down) as (
        url,
        _,
    ):
        code = main(["smoke", "--base-url", url, "--timeout", "120"])
    out = capsys.readouterr().out
    assert code == 1
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    assert " FAIL " in lines["MCP tools/list"]
    assert " pass " in lines["chat completion"] and " pass " in lines["media resolve"]
    assert "MCP tools/list" in out.splitlines()[-1]
