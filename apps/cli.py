"""The `jan-server` command.

jan-server dev                  the whole API on http://127.0.0.1:8000 (local mode)
jan-server serve <app>          one app, configured from the environment (what a container runs);
                                `--workers N` runs N processes on one port (a host without Kubernetes)
jan-server migrate <app>|all    apply an app's database migrations (`DATABASE_URL`)
jan-server render --stack …     the platform program's desired state, rendered offline
jan-server charts pull          fill the chart cache with the pinned upstream charts
jan-server smoke --base-url …   an end-to-end check of a deployed stack through its public entry
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from apps.gateway.routes import APPS, AppName

if TYPE_CHECKING:
    from fastapi import FastAPI

_APP_CHOICES = [name.value for name in AppName]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jan-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="run the whole API locally on the embedded defaults")
    serve = commands.add_parser("serve", help="run one app")
    serve.add_argument("app", choices=_APP_CHOICES)
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - container default
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="worker processes (default $WEB_CONCURRENCY or 1; in Kubernetes keep 1 and let the HPA scale)",
    )
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("app", choices=[*_APP_CHOICES, "all"])
    render = commands.add_parser("render", help="render the platform program offline")
    render.add_argument(
        "--stack",
        required=True,
        help="a stack name (dev, staging, prod: its file in the Pulumi project of the current "
        "directory) or the path of a stack file",
    )
    render.add_argument(
        "--out",
        default="render",
        help="the directory to write resources.json and manifests/ into (default: %(default)s)",
    )
    render.add_argument("--diff", default=None, help="an earlier render directory to compare with")
    charts = commands.add_parser("charts", help="the local cache of pinned upstream charts")
    charts_commands = charts.add_subparsers(dest="charts_command", required=True)
    pull = charts_commands.add_parser(
        "pull", help="download every pinned upstream chart the cache lacks from its chart repository"
    )
    pull.add_argument(
        "--cache",
        default=None,
        help="the cache directory (default: $JAN_CHART_CACHE or ~/.cache/jan-server/charts)",
    )
    smoke = commands.add_parser("smoke", help="check a deployed stack end to end, as a user would")
    smoke.add_argument(
        "--base-url", required=True, help="the stack's public entry, e.g. https://api.example.com"
    )
    smoke.add_argument("--token", default=None, help="a JWT or sk_ key to use instead of a guest login")
    smoke.add_argument("--model", default=None, help="the model to chat with (default: the first listed)")
    smoke.add_argument("--timeout", type=float, default=180.0, help="seconds for the whole run")
    args = parser.parse_args(argv)

    if args.command == "dev":
        from apps.gateway.local import LocalConfig, run  # noqa: PLC0415 - heavy imports per command

        run(LocalConfig())
        return 0
    if args.command == "serve":
        return _serve(AppName(args.app), args.host, args.port, args.workers)
    if args.command == "migrate":
        return _migrate(args.app)
    if args.command == "charts":
        return _pull_charts(args.cache)
    if args.command == "smoke":
        return _smoke(args.base_url, args.token, args.model, args.timeout)
    return _render(args.stack, args.out, args.diff)


def _serve(app: AppName, host: str, port: int | None, workers: int = 1) -> int:
    """Run one app: one process, or `workers` processes sharing the port (uvicorn's supervisor).

    One process per pod is the Kubernetes design: a process saturates one core at its knee
    (`bench/load.py`), so pods ask for one core and the HPA adds pods at a CPU target below the knee
    (charts/jan-server values, infra/specs); replicas spread over nodes and each is probed and
    restarted on its own. `--workers` is for a host without an orchestrator (a VM, `docker run` on a
    many-core box). Each worker is a whole app: its own pools, caches and admission bounds, so the
    host's total concurrency is `workers` times `ADMISSION__MAX_CONCURRENT`, and its database pool
    `workers` times `DB_POOL_SIZE` + `DB_MAX_OVERFLOW` connections.
    """
    from apps.common.serving import serve  # noqa: PLC0415

    spec = APPS[app]
    if workers > 1:
        _built(app)  # a bad setting stops here, once, not in every worker
        os.environ[_SERVE_APP_ENV] = app.value
        serve("apps.cli:worker_app", factory=True, workers=workers, host=host, port=port or spec.port)
        return 0
    serve(_built(app), host=host, port=port or spec.port)
    return 0


_SERVE_APP_ENV = "JAN_SERVE_APP"


def worker_app() -> FastAPI:
    """The app a `serve --workers N` worker process runs (named by the supervisor's environment)."""
    return _built(AppName(os.environ[_SERVE_APP_ENV]))


def _built(app: AppName) -> FastAPI:
    from apps.common.logs import configure_logging  # noqa: PLC0415

    main_module = importlib.import_module(f"{APPS[app].package}.main")
    application: FastAPI = main_module.create_app()
    configure_logging(application.state.settings.log_level, application.state.settings.log_format)
    return application


def _migrate(target: str) -> int:
    from apps.common.migrations import upgrade  # noqa: PLC0415

    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)  # noqa: T201
        return 2
    names = list(AppName) if target == "all" else [AppName(target)]
    for name in names:
        upgrade(APPS[name].package, url)
    return 0


def _smoke(base_url: str, token: str | None, model: str | None, timeout: float) -> int:
    import asyncio  # noqa: PLC0415

    from apps.smoke import passed, print_table, run_smoke  # noqa: PLC0415

    results = asyncio.run(run_smoke(base_url, credential=token, model=model, timeout=timeout))
    print_table(results, sys.stdout)
    return 0 if passed(results) else 1


def _render(stack: str, out: str, diff: str | None) -> int:
    try:
        render_module = importlib.import_module("infra.render")
    except ModuleNotFoundError:
        print("the platform program is not available in this installation", file=sys.stderr)  # noqa: T201
        return 2
    result: int = render_module.main(stack=stack, out=out, diff=diff)
    return result


def _pull_charts(cache: str | None) -> int:
    try:
        chart_cache = importlib.import_module("infra.chart_cache")
        versions = importlib.import_module("infra.versions")
    except ModuleNotFoundError:
        print("the platform program is not available in this installation", file=sys.stderr)  # noqa: T201
        return 2
    directory = Path(cache) if cache else chart_cache.cache_dir()
    try:
        pulled = chart_cache.pull(versions.UPSTREAM_CHARTS, directory)
    except chart_cache.ChartCacheError as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return 1
    for item in pulled:
        state = "downloaded" if item.downloaded else "cached"
        print(f"{item.pin.chart} {item.pin.version}: {state} {item.path}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
