"""The model supervisor with a stand-in child: a tiny OpenAI-style `/v1/models` server in Python."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import pytest

from apps.gateway.embedded import free_port
from apps.gateway.model_server import ModelSupervisor

CHILD = """
import http.server, json, sys
port = int(sys.argv[1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "stand-in"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("stand-in model listening", file=sys.stderr, flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def stand_in(port: int) -> ModelSupervisor:
    return ModelSupervisor(
        [sys.executable, "-c", CHILD, str(port)], f"http://127.0.0.1:{port}/v1", startup_timeout=30
    )


def test_a_killed_child_is_restarted_and_readiness_follows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="apps.gateway.model")
    supervisor = stand_in(free_port())
    supervisor.start()
    try:
        asyncio.run(supervisor.check())
        process = supervisor.process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        with pytest.raises(RuntimeError, match=r"down|starting"):
            asyncio.run(supervisor.check())
        assert supervisor.wait_restarted(after=0, timeout=60)
        asyncio.run(supervisor.check())
        assert supervisor.process is not None and supervisor.process.pid != process.pid
    finally:
        supervisor.stop()
    # The child's stderr is in our logs, and so is its death.
    output = [r for r in caplog.records if r.getMessage() == "stand-in model listening"]
    assert len(output) == 2 and {getattr(r, "pid", None) for r in output} == {
        process.pid,
        supervisor.process.pid,
    }
    exits = [r for r in caplog.records if r.getMessage() == "model server exited; restarting"]
    assert exits and getattr(exits[0], "exit_code", None) == -signal.SIGKILL


def test_a_child_that_cannot_start_fails_loudly_with_its_output() -> None:
    supervisor = ModelSupervisor(
        [sys.executable, "-c", "import sys; print('no such model file', file=sys.stderr); sys.exit(3)"],
        f"http://127.0.0.1:{free_port()}/v1",
        startup_timeout=30,
    )
    with pytest.raises(RuntimeError, match="no such model file"):
        supervisor.start()


def test_stop_does_not_restart() -> None:
    supervisor = stand_in(free_port())
    supervisor.start()
    process = supervisor.process
    supervisor.stop()
    assert process is not None and process.poll() is not None
    assert supervisor.process is process and supervisor.restarts == 0
