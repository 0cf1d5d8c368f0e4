"""The local model server as a supervised child process.

`make dev` (and the tests that run the real model) start SmolLM2-135M-Instruct through this class:

- The child keeps one loopback port for its whole life, so llm-api's provider URL never changes.
- When it exits (a crash, an OOM kill, someone's `kill`), it is started again after a back-off that
  doubles from `BACKOFF_START` up to `BACKOFF_MAX` seconds; a child that stayed up for
  `STABLE_SECONDS` resets the back-off. Nothing gives up: a model that cannot start keeps being
  retried, and readiness says so.
- Its stderr and stdout go to our logs line by line (logger `apps.gateway.model`, field `pid`), and
  the exit code of every death is logged with the last lines it printed.
- `check()` is a readiness check (`/readyz`): it fails while the child is starting, down or not
  answering `GET /v1/models`.

A thread watches the child rather than a task on the app's event loop: the child must outlive (and be
restarted independently of) anything uvicorn runs, and `make dev` starts it before uvicorn exists.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO

import httpx

log = logging.getLogger("apps.gateway.model")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STABLE_SECONDS = 60.0
READY_POLL_SECONDS = 0.2
CHECK_TIMEOUT_SECONDS = 1.5
MAX_LINE_CHARS = 2000


class ModelSupervisor:
    def __init__(
        self,
        command: list[str],
        base_url: str,
        *,
        name: str = "local model",
        startup_timeout: float = 120.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.command = command
        self.preexec_fn = preexec_fn
        self.base_url = base_url
        self.name = name
        self.startup_timeout = startup_timeout
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._last_lines: collections.deque[str] = collections.deque(maxlen=20)
        self._last_exit: int | None = None
        self._watcher: threading.Thread | None = None
        self._output: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self, wait: bool = True) -> None:
        """Start the child (and its watcher); with `wait`, return once it answers or fail loudly."""
        self._spawn()
        if wait:
            self._await_ready(self.startup_timeout, first=True)
        self._watcher = threading.Thread(target=self._watch, name="model-supervisor", daemon=True)
        self._watcher.start()

    def stop(self, grace_seconds: float = 10.0) -> None:
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout=grace_seconds)

    def wait_restarted(self, after: int, timeout: float) -> bool:
        """Block until the child has been restarted more than `after` times and is ready again."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (self.restarts > after and self.ready):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    async def check(self) -> None:
        """Readiness: the child runs, has come up, and answers its model list."""
        process = self.process
        if process is None or process.poll() is not None:
            code = self._last_exit if process is None else process.returncode
            raise RuntimeError(f"the {self.name} server is down (exit code {code}); restarting")
        if not self.ready:
            raise RuntimeError(f"the {self.name} server is starting")
        async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS) as client:
            response = await client.get(f"{self.base_url}/models")
        if response.status_code != 200:
            raise RuntimeError(f"the {self.name} server answered {response.status_code}")

    def _spawn(self) -> None:
        process = subprocess.Popen(  # noqa: S603 - our own fixed command line
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec_fn,  # only a prctl before exec: no locks, no threads touched
        )
        self.process = process
        assert process.stdout is not None
        self._output = threading.Thread(
            target=self._pump, args=(process.stdout, process.pid), name="model-output", daemon=True
        )
        self._output.start()
        log.info("model server started", extra={"pid": process.pid, "model_server": self.name})

    def _pump(self, stream: IO[bytes], pid: int) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if len(line) > MAX_LINE_CHARS:  # llama.cpp prints whole grammars when one fails
                line = f"{line[:MAX_LINE_CHARS]}… ({len(line) - MAX_LINE_CHARS} more characters)"
            if line:
                self._last_lines.append(line)
                log.info(line, extra={"pid": pid, "model_server": self.name})
        stream.close()

    def _watch(self) -> None:
        delay = BACKOFF_START
        while not self._stopping.is_set():
            process = self.process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            self._ready.clear()
            self._last_exit = code
            if self._output is not None:  # its last words, before they are logged with its exit
                self._output.join(timeout=2)
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= STABLE_SECONDS:
                delay = BACKOFF_START
            log.error(
                "model server exited; restarting",
                extra={
                    "pid": process.pid,
                    "exit_code": code,
                    "restart_in_seconds": delay,
                    "last_output": list(self._last_lines)[-10:],
                },
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX)
            try:
                self._spawn()
            except OSError:
                log.exception("model server could not be started")
                continue
            self._await_ready(self.startup_timeout, first=False)
            with self._changed:
                self.restarts += 1
                self._changed.notify_all()

    def _await_ready(self, timeout: float, *, first: bool) -> None:
        """Poll the model list until it answers. A first start that fails raises; a restart just logs."""
        process = self.process
        assert process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.poll() is not None:
                break
            if _answers(f"{self.base_url}/models"):
                self._ready.set()
                log.info("model server ready", extra={"pid": process.pid, "base_url": self.base_url})
                with self._changed:
                    self._changed.notify_all()
                return
            time.sleep(READY_POLL_SECONDS)
        if first:
            self.stop()
            if self._output is not None:  # everything it printed, up to its exit
                self._output.join(timeout=5)
            tail = "\n".join(self._last_lines)
            raise RuntimeError(f"the {self.name} server did not become ready:\n{tail}")
        if process.poll() is None:  # hung while starting: kill it, the watcher starts another
            log.error("model server did not become ready; killing it", extra={"pid": process.pid})
            process.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
