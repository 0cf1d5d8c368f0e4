"""How an invalid stack config is reported: one `jan-server:<key>: problem` line per error.

Keys are spelled the way `pulumi config set --path` spells them (`gpuPools[0].maxSize`), including
the cross-field rules, which raise `RuleError(key, ...)` relative to the model that raised them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from infra.service_config import RuleError


def describe(exc: ValidationError, project: str) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        path = _key(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RuleError):
            path = f"{path}.{cause.key}" if path else cause.key
            message = str(cause)
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{project}:{path or '<root>'}: {message}")
    return report(lines)


def report(lines: Iterable[str]) -> str:
    return "invalid stack config:\n  " + "\n  ".join(lines)


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key
