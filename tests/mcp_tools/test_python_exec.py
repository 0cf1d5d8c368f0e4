"""`python_exec` against a loopback SandboxFusion fake that really runs the code."""

from __future__ import annotations

import base64
import threading
from typing import Any

import httpx
import orjson

from apps.mcp_tools.main import create_app
from tests.harness.issuer import TestIssuer
from tests.harness.mcp_client import McpServer, error_text, mcp_session, payload
from tests.harness.sandbox import FakeSandbox, SandboxFault
from tests.harness.server import serve
from tests.harness.waiting import CLIENT_TIMEOUT


async def run(server_url: str, issuer: TestIssuer, **arguments: Any) -> Any:
    async with mcp_session(server_url, issuer.mint("coder")) as session:
        return await session.call_tool("python_exec", arguments)


async def test_output_exit_code_and_timing(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    result = payload(
        await run(mcp_server.url, issuer, code="import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    )
    assert result["status"] == "finished" and result["exit_code"] == 0 and result["timed_out"] is False
    assert result["stdout"] == "42\n" and result["stderr"] == "warn\n"
    assert result["duration_ms"] >= 0
    [sent] = sandbox.requests
    assert sent["language"] == "python" and sent["run_timeout"] == 3.0


async def test_a_non_zero_exit_is_a_result_the_model_can_fix(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    result = payload(await run(mcp_server.url, issuer, code="raise ValueError('bad input')"))
    assert result["status"] == "failed" and result["exit_code"] == 1
    assert "ValueError: bad input" in result["stderr"]


async def test_the_sandbox_time_limit_stops_the_program(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    result = payload(await run(mcp_server.url, issuer, code="import time\ntime.sleep(30)", timeout=0.5))
    assert result["status"] == "timeout" and result["timed_out"] is True
    assert "0.5s time limit" in result["message"]
    assert sandbox.requests[0]["run_timeout"] == 0.5


async def test_the_server_caps_the_requested_timeout(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    payload(await run(mcp_server.url, issuer, code="print(1)", timeout=500))
    assert sandbox.requests[0]["run_timeout"] == 3.0


async def test_files_and_stdin_reach_the_program(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    code = "import sys\nprint(open('data/in.csv').read().strip(), sys.stdin.read())"
    result = payload(
        await run(mcp_server.url, issuer, code=code, files={"data/in.csv": "a,b\n"}, stdin="hello")
    )
    assert result["stdout"] == "a,b hello\n"
    assert base64.b64decode(sandbox.requests[0]["files"]["data/in.csv"]) == b"a,b\n"


async def test_other_languages_are_passed_on(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    result = payload(await run(mcp_server.url, issuer, code="echo $((2 + 3))", language="bash"))
    assert result["stdout"] == "5\n"


async def test_a_hanging_sandbox_is_cut_off_by_the_server(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    sandbox.fail(SandboxFault(stall=True))
    message = error_text(await run(mcp_server.url, issuer, code="print(1)", timeout=1))
    assert "did not answer within 6s" in message


async def test_sandbox_failures_are_tool_errors(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    sandbox.fail(SandboxFault(status=503), SandboxFault(sandbox_error=True))
    assert "HTTP 503" in error_text(await run(mcp_server.url, issuer, code="print(1)"))
    assert "executor pod unavailable" in error_text(await run(mcp_server.url, issuer, code="print(1)"))
    unsupported = error_text(await run(mcp_server.url, issuer, code="x", language="cobol"))
    assert "refused the request (HTTP 422)" in unsupported


async def test_unsafe_file_names_are_refused(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    for name in ("/etc/passwd", "../escape.txt", ""):
        assert "Invalid file name" in error_text(
            await run(mcp_server.url, issuer, code="print(1)", files={name: "x"})
        )
    assert sandbox.requests == []


async def test_without_a_sandbox_the_tool_says_so(
    settings_factory: Any, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    app = create_app(settings_factory(sandbox_fusion_url=None))
    with serve(app) as server:
        message = error_text(await run(server.url, issuer, code="print(1)"))
    assert "no sandbox is configured" in message and "SANDBOX_FUSION_URL" in message
    assert sandbox.requests == []


Note = tuple[float, float | None, str | None]


async def run_held_until(
    server_url: str, issuer: TestIssuer, sandbox: FakeSandbox, notes: int
) -> tuple[Any, list[Note]]:
    """Run `print('late')` with a sandbox that answers only once `notes` progress notes have reached
    the caller; the result and every note."""
    hold = threading.Event()
    sandbox.fail(SandboxFault(hold=hold))
    received: list[Note] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        received.append((progress, total, message))
        if len(received) >= notes:
            hold.set()

    async with mcp_session(server_url, issuer.mint("coder")) as session:
        result = await session.call_tool(
            "python_exec", {"code": "print('late')"}, progress_callback=on_progress
        )
    return result, received


async def test_a_slow_run_reports_progress_before_its_result(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    result, notes = await run_held_until(mcp_server.url, issuer, sandbox, notes=1)
    assert payload(result)["stdout"] == "late\n"
    assert notes[0] == (0, 3.0, "python_exec: started")
    assert [p for p, _, _ in notes] == sorted(p for p, _, _ in notes)


async def test_a_run_still_going_reports_how_long_it_has_run(
    settings_factory: Any, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    with serve(create_app(settings_factory(tool_progress_seconds=0.2))) as server:
        result, notes = await run_held_until(server.url, issuer, sandbox, notes=2)
    assert payload(result)["stdout"] == "late\n"
    progress, total, message = notes[1]
    assert progress > 0 and total == 3.0
    assert message is not None and message.startswith("python_exec: running for ")


async def test_a_request_without_a_progress_token_keeps_its_json_answer(
    mcp_server: McpServer, issuer: TestIssuer, sandbox: FakeSandbox
) -> None:
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    headers = {
        "authorization": f"Bearer {issuer.mint('coder')}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as http:
        plain = await http.post(
            mcp_server.endpoint,
            headers=headers,
            json={**call, "params": {"name": "python_exec", "arguments": {"code": "print(1)"}}},
        )
        assert plain.headers["content-type"].startswith("application/json")
        streamed = await http.post(
            mcp_server.endpoint,
            headers=headers,
            json={
                **call,
                "params": {
                    "name": "python_exec",
                    "arguments": {"code": "print(2)"},
                    "_meta": {"progressToken": "p1"},
                },
            },
        )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    frames = [line for line in streamed.text.splitlines() if line.startswith("data: {")]
    methods = [orjson.loads(line[6:]).get("method") for line in frames]
    assert methods[0] == "notifications/progress" and methods[-1] is None  # the result comes last
    assert orjson.loads(frames[-1][6:])["result"]["isError"] is False
