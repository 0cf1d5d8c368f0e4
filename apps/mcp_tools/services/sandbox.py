"""`python_exec` through SandboxFusion's `POST /run_code`; code never runs inside mcp-tools.

Request: `{code, language, run_timeout, compile_timeout, files: {path: base64}}`. Answer: `{status:
"Success" | "Failed" | "SandboxError", message, compile_result, run_result: {status: "Finished" |
"TimeLimitExceeded" | "Error", execution_time, return_code, stdout, stderr}, files}`.

A program that ran is a tool *result*, whatever its exit code: a non-zero exit or a time-limit kill
comes back with `exit_code`, `stderr` and `timed_out` for the model to read and fix its code. The
tool fails (`isError`) only when the sandbox itself could not be used: not configured, unreachable,
too slow, a 5xx, or its own `SandboxError`.

Every call is bounded twice: the sandbox is asked for `run_timeout` (the caller's `timeout`, capped
by `sandbox_timeout_seconds`), and the HTTP call itself gives up a few seconds after that, so a
sandbox that hangs cannot hold the tool call open.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx

from apps.mcp_tools.services.errors import ToolFailure

OUTPUT_LIMIT = 20_000
_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RunRequest:
    code: str
    language: str = "python"
    timeout_seconds: float | None = None
    files: dict[str, str] | None = None
    stdin: str | None = None


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_LIMIT:
        return text
    return text[:OUTPUT_LIMIT] + f"\n… [{len(text) - OUTPUT_LIMIT} more characters cut]"


class Sandbox:
    def __init__(self, client: httpx.AsyncClient, base_url: str | None, max_timeout_seconds: float) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/run_code" if base_url else None
        self.max_timeout_seconds = max_timeout_seconds

    def run_timeout(self, requested: float | None) -> float:
        """The time limit a run gets: the caller's, capped by the server's (which is the default)."""
        return min(requested or self.max_timeout_seconds, self.max_timeout_seconds)

    async def run(self, request: RunRequest) -> dict[str, Any]:
        if self._url is None:
            raise ToolFailure(
                "Code execution is not available on this server (no sandbox is configured; the operator "
                "must set SANDBOX_FUSION_URL). Do not retry; reason about the code instead."
            )
        run_timeout = self.run_timeout(request.timeout_seconds)
        body: dict[str, Any] = {
            "code": request.code,
            "language": request.language,
            "run_timeout": run_timeout,
            "compile_timeout": run_timeout,
        }
        if request.files:
            body["files"] = {
                name: base64.b64encode(text.encode()).decode() for name, text in request.files.items()
            }
        if request.stdin is not None:
            body["stdin"] = request.stdin
        answer = await self._post(body, run_timeout + _GRACE_SECONDS)
        return _result(answer, run_timeout)

    async def _post(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._url is not None
        try:
            response = await self._client.post(self._url, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise ToolFailure(
                f"The sandbox did not answer within {timeout:g}s. Make the code faster or try again later."
            ) from exc
        except httpx.HTTPError as exc:
            raise ToolFailure("The sandbox could not be reached; try again later.") from exc
        if response.status_code >= 500:
            raise ToolFailure(f"The sandbox failed (HTTP {response.status_code}); try again later.")
        try:
            answer = response.json()
        except ValueError as exc:
            raise ToolFailure("The sandbox gave an answer that is not JSON; try again later.") from exc
        if response.status_code >= 400 or not isinstance(answer, dict):
            detail = answer.get("detail") if isinstance(answer, dict) else None
            raise ToolFailure(f"The sandbox refused the request (HTTP {response.status_code}): {detail}")
        return answer


def _result(answer: dict[str, Any], run_timeout: float) -> dict[str, Any]:
    if answer.get("status") == "SandboxError":
        raise ToolFailure(f"The sandbox failed: {answer.get('message') or 'unknown error'}. Try again later.")
    compiled = answer.get("compile_result") or {}
    ran = answer.get("run_result") or {}
    stage = ran or compiled
    timed_out = stage.get("status") == "TimeLimitExceeded"
    exit_code = stage.get("return_code")
    seconds = stage.get("execution_time")
    result: dict[str, Any] = {
        "status": "timeout" if timed_out else "finished" if answer.get("status") == "Success" else "failed",
        "exit_code": exit_code,
        "timed_out": timed_out,
        "stdout": _clip(str(stage.get("stdout") or "")),
        "stderr": _clip(str(stage.get("stderr") or "")),
        "duration_ms": round(float(seconds) * 1000, 1) if isinstance(seconds, int | float) else None,
        "files": answer.get("files") or {},
    }
    if not ran and compiled:
        result["stage"] = "compile"
    if timed_out:
        result["message"] = f"The program was stopped after the {run_timeout:g}s time limit."
    elif answer.get("message"):
        result["message"] = answer["message"]
    return result
