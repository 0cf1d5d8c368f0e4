"""A fake SandboxFusion on loopback: `POST /run_code`, answered the way SandboxFusion answers.

It really runs the code (python or bash) in a child process in a fresh temporary folder, with the
request's `files` (base64) written there first, `stdin` fed in and `run_timeout` enforced, so exit
codes, stderr and time-limit kills are real. The answer is SandboxFusion's `RunCodeResponse`:
`{status: Success | Failed | SandboxError, message, compile_result, run_result: {status: Finished |
TimeLimitExceeded, execution_time, return_code, stdout, stderr}, executor_pod_name, files}`.

Faults: `fail(SandboxFault(status=503))` for an HTTP error, `stall=True` for a sandbox that never
answers, `sandbox_error=True` for SandboxFusion's own `SandboxError` status, `hold=threading.Event()`
for a slow sandbox that answers only once the test sets the event.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

_COMMANDS = {"python": [sys.executable, "-I", "main.py"], "bash": ["bash", "main.py"]}


@dataclass
class SandboxFault:
    status: int | None = None
    stall: bool = False
    sandbox_error: bool = False
    hold: threading.Event | None = None


@dataclass
class FakeSandbox:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _faults: deque[SandboxFault] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.app = FastAPI()
        self.app.add_api_route("/run_code", self._run_code, methods=["POST"])

    def fail(self, *faults: SandboxFault) -> None:
        self._faults.extend(faults)

    def reset(self) -> None:
        self.requests.clear()
        self._faults.clear()

    async def _run_code(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        fault = self._faults.popleft() if self._faults else None
        if fault and fault.stall:
            await asyncio.sleep(3600)
        if fault and fault.hold is not None:
            await asyncio.to_thread(fault.hold.wait, 60)
        if fault and fault.status:
            return JSONResponse({"detail": "injected failure"}, status_code=fault.status)
        if fault and fault.sandbox_error:
            return JSONResponse(_response("SandboxError", "executor pod unavailable", None))
        language = body.get("language", "python")
        if language not in _COMMANDS:
            return JSONResponse({"detail": f"language {language} not supported"}, status_code=422)
        run = await _execute(body, _COMMANDS[language])
        status = "Success" if run["status"] == "Finished" and run["return_code"] == 0 else "Failed"
        return JSONResponse(_response(status, "", run))


def _response(status: str, message: str, run: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "status": status,
        "message": message,
        "compile_result": None,
        "run_result": run,
        "executor_pod_name": None,
        "files": {},
    }


async def _execute(body: dict[str, Any], command: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fake-sandbox-") as folder:
        root = Path(folder)
        for name, content in (body.get("files") or {}).items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(content))
        (root / "main.py").write_text(body["code"])
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=root,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdin = str(body.get("stdin") or "").encode()
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(stdin), timeout=float(body.get("run_timeout") or 10)
            )
            status = "Finished"
        except TimeoutError:
            process.kill()
            stdout, stderr = await process.communicate()
            status = "TimeLimitExceeded"
        return {
            "status": status,
            "execution_time": round(time.perf_counter() - started, 4),
            "return_code": process.returncode if status == "Finished" else None,
            "stdout": stdout.decode(errors="replace"),
            "stderr": stderr.decode(errors="replace"),
        }
