"""One app run as its container runs it (`jan-server serve <app>`), for the benches that measure a
process of its own: from this checkout or another one (an A/B in the same run)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from apps.gateway.embedded import free_port, stop_process, wait_ready


@contextmanager
def served_app(
    app: str, env: Mapping[str, str], log: Path, *, tree: Path | None = None, ready_seconds: float = 60
) -> Iterator[tuple[str, int]]:
    """`app` on a free loopback port, ready: (its URL, its pid). Its output goes to `log`: an unread
    pipe would fill under load and block the server in its next write."""
    port = free_port()
    command = [sys.executable, "-m", "apps.cli", "serve", app, "--host", "127.0.0.1", "--port", str(port)]
    # PYTHONSAFEPATH: `python -m` would otherwise import the checkout in the working directory first.
    source = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree.resolve())} if tree is not None else {}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, env={**os.environ, **env, **source}, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", process, ready_seconds)
        yield url, process.pid
    finally:
        stop_process(process)
