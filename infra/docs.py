"""Generate the config reference (README) and the `config:` declarations (Pulumi.yaml) from the model.

`python -m infra.docs` rewrites both; `python -m infra.docs --check` exits 1 when either differs from
what the model says (CI and a test run it), so the documentation cannot drift from `infra/config.py`.

Every top-level key is declared with its Pulumi type (`object` for structured keys, which Pulumi CLIs
accept since mid-2025) and its description; the model does the detailed validation.
"""

from __future__ import annotations

import enum
import sys
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infra.config import PROJECT, REPO_ROOT, StackConfig

README = REPO_ROOT / "README.md"
PROJECT_FILE = REPO_ROOT / "Pulumi.yaml"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def reference() -> str:
    """The Markdown table of every key, nested keys as `pulumi config set --path` spells them."""
    lines = [
        f"Every key lives in the `{PROJECT}` namespace (`{PROJECT}:cluster` in a stack file). Unknown keys "
        "are errors.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    for key, info in _walk(StackConfig, ""):
        lines.append(
            f"| `{key}` | {_type_name(info.annotation)} | {_default(info)} | {info.description or ''} |"
        )
    return "\n".join(lines)


def project_config() -> dict[str, dict[str, Any]]:
    """The `config:` block of Pulumi.yaml."""
    declared = {}
    for name, info in StackConfig.model_fields.items():
        entry = {**_pulumi_type(info.annotation), "description": info.description or ""}
        if not info.is_required():
            # Pulumi requires every declared key without a default to be set in each stack.
            entry["default"] = _pulumi_default(info)
        declared[info.alias or name] = entry
    return declared


def _pulumi_default(info: FieldInfo) -> Any:
    if info.default is None:
        return ""
    assert info.annotation is not None
    adapter: TypeAdapter[Any] = TypeAdapter(info.annotation)
    return adapter.dump_python(info.default, mode="json", by_alias=True)


def render_readme(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}\n{END}{tail}"


def render_project_file(text: str) -> str:
    document = yaml.safe_load(text)
    document["config"] = project_config()
    return yaml.safe_dump(document, sort_keys=False, width=110)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, render in ((README, render_readme), (PROJECT_FILE, render_project_file)):
        current = path.read_text()
        expected = render(current)
        if current != expected:
            stale.append(path.name)
            if not check:
                path.write_text(expected)
    if check and stale:
        print(f"out of date with infra/config.py: {', '.join(stale)} (run `make docs`)", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        yield key, info
        nested = _nested_model(info.annotation)
        if nested is not None:
            suffix = "[]." if typing.get_origin(info.annotation) is list else "."
            yield from _walk(nested, f"{key}{suffix}")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return _nested_model(item)
    return None


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f"`{arg}`" for arg in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map of string"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    names = {str: "string", int: "integer", bool: "boolean", IPv4Network: "CIDR"}
    return names.get(annotation, str(annotation))


def _pulumi_type(annotation: Any) -> dict[str, Any]:
    """A Pulumi config type declaration (`{"type": …}`, with `items` for arrays)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        (arg,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _pulumi_type(arg)
    if origin is list:
        return {"type": "array", "items": _pulumi_type(typing.get_args(annotation)[0])}
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return {"type": "object"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": "string"}
    names = {str: "string", int: "integer", bool: "boolean", IPv4Network: "string"}
    return {"type": names[annotation]}


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list):
        value = [str(item) for item in value]
    return f"`{value}`" if value != [] else "`[]`"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
