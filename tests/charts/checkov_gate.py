"""The checkov gate: render every chart case, scan the manifests offline, and fail on any failed check
that `charts/checkov-exceptions.yaml` does not list with its reason, or on a listed exception that no
longer matches anything (so the reviewed file never outgrows what is needed).

Run by `make checkov` (part of `make test`): python -m tests.charts.checkov_gate --checkov <path>.
checkov lives in its own venv because it pins many dependencies; `--skip-download` keeps it offline.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.charts.rendering import CHARTS, write_all

EXCEPTIONS_FILE = CHARTS / "checkov-exceptions.yaml"


@dataclass(frozen=True)
class Failure:
    check: str
    resource: str  # checkov's id: Kind.namespace.name
    file: str


@dataclass(frozen=True)
class Waiver:
    check: str
    resources: tuple[str, ...]
    reason: str

    def covers(self, failure: Failure) -> bool:
        return failure.check == self.check and any(
            fnmatch.fnmatchcase(failure.resource, p) for p in self.resources
        )


def load_exceptions(path: Path = EXCEPTIONS_FILE) -> list[Waiver]:
    entries = yaml.safe_load(path.read_text())["exceptions"]
    loaded = []
    for entry in entries:
        if set(entry) != {"check", "resources", "reason"} or len(entry["reason"].split()) < 5:
            raise ValueError(f"{path}: each exception needs check, resources and a real reason: {entry}")
        loaded.append(Waiver(entry["check"], tuple(entry["resources"]), entry["reason"]))
    return loaded


def failures_from_report(report: Any) -> list[Failure]:
    """checkov's JSON: one report object, or a list of them (one per framework)."""
    reports = report if isinstance(report, list) else [report]
    failures = []
    for one in reports:
        for check in one.get("results", {}).get("failed_checks", []):
            failures.append(Failure(check["check_id"], check["resource"], check["file_path"]))
    return failures


def judge(failures: list[Failure], exceptions: list[Waiver]) -> tuple[list[Failure], list[Waiver]]:
    """(failures no exception covers, exceptions that cover no failure)."""
    unexplained = [f for f in failures if not any(e.covers(f) for e in exceptions)]
    unused = [e for e in exceptions if not any(e.covers(f) for f in failures)]
    return unexplained, unused


def scan(checkov: Path, directory: Path) -> Any:
    command = [str(checkov), "-d", str(directory), "--framework", "kubernetes", "--skip-download"]
    command += ["--compact", "--quiet", "--output", "json"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkov", type=Path, required=True)
    args = parser.parse_args(argv)
    exceptions = load_exceptions()
    with tempfile.TemporaryDirectory() as tmp:
        files = write_all(Path(tmp))
        failures = failures_from_report(scan(args.checkov, Path(tmp)))
    unexplained, unused = judge(failures, exceptions)
    for failure in unexplained:
        sys.stderr.write(f"FAILED {failure.check} {failure.resource} ({failure.file})\n")
    for waiver in unused:
        sys.stderr.write(f"STALE exception {waiver.check} {list(waiver.resources)}\n")
    excused = len(failures) - len(unexplained)
    sys.stdout.write(
        f"checkov: {len(files)} renders, {excused} failed checks excused by {len(exceptions)} listed "
        f"exceptions, {len(unexplained)} unexplained, {len(unused)} stale\n"
    )
    return 1 if unexplained or unused else 0


if __name__ == "__main__":
    raise SystemExit(main())
