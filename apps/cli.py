"""The `jan-server` command.

jan-server dev                  the whole API on http://127.0.0.1:8000 (local mode)
jan-server serve <app>          one app, configured from the environment (what a container runs)
jan-server migrate <app>|all    apply an app's database migrations (`DATABASE_URL`)
jan-server render --stack …     the platform program's desired state, rendered offline
jan-server smoke --base-url …   an end-to-end check of a deployed stack through its public entry
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from apps.gateway.routes import APPS, AppName

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
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("app", choices=[*_APP_CHOICES, "all"])
    render = commands.add_parser("render", help="render the platform program offline")
    render.add_argument("--stack", required=True)
    render.add_argument("--out", default="render")
    render.add_argument("--diff", default=None, help="an earlier render directory to compare with")
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
        return _serve(AppName(args.app), args.host, args.port)
    if args.command == "migrate":
        return _migrate(args.app)
    if args.command == "smoke":
        return _smoke(args.base_url, args.token, args.model, args.timeout)
    return _render(args.stack, args.out, args.diff)


def _serve(app: AppName, host: str, port: int | None) -> int:
    import uvicorn  # noqa: PLC0415

    from apps.common.logs import configure_logging  # noqa: PLC0415

    spec = APPS[app]
    main_module = importlib.import_module(f"{spec.package}.main")
    application = main_module.create_app()
    configure_logging(application.state.settings.log_level, application.state.settings.log_format)
    uvicorn.run(application, host=host, port=port or spec.port, log_config=None, access_log=False)
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
