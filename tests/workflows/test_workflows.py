"""The workflows' own rules, beyond what the linters check, and proof that the linters' gate bites.

`make lint` runs actionlint and zizmor over .github/workflows; these tests pin what neither linter
requires (a release comment beside every commit pin, no expansion at all in shell, permissions per
job) and run both linters over a known-bad workflow so a silently broken linter cannot pass the gate.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+\.\d+\.\d+\s*$")
BAD_WORKFLOW = """\
name: bad
on: pull_request
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_there_are_workflows() -> None:
    assert _workflow_files()


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_release(path: Path) -> None:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"\s*(-\s*)?uses:", line) and "uses: ./" not in line:
            assert PINNED.search(line), f"{path.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_least_privilege_and_no_expansion_in_shell(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {}, "the workflow grants nothing; jobs ask for what they need"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {name} declares its permissions"
        for step in job.get("steps", []):
            assert "${{" not in step.get("run", ""), f"job {name}: pass values to run: through env"
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


def test_the_linters_flag_a_bad_workflow(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # actionlint finds the project by its repository root
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "bad.yml").write_text(BAD_WORKFLOW)
    actionlint = subprocess.run(
        [BIN / "actionlint", f"-shellcheck={BIN / 'shellcheck'}", "-pyflakes=", "-oneline"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert actionlint.returncode == 1, actionlint.stderr
    assert 'runtime "node20" is deprecated' in actionlint.stdout
    zizmor = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", "--format", "json", ".github/workflows"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert zizmor.returncode != 0
    found = {finding["ident"] for finding in json.loads(zizmor.stdout)}
    assert {"unpinned-uses", "artipacked", "template-injection"} <= found


def _runs(job: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for step in job["steps"]]


def test_previews_and_the_deploy_run_the_policy_pack_and_the_deploy_is_smoke_tested() -> None:
    preview = _load(WORKFLOWS / "ci.yml")["jobs"]["preview"]
    (command,) = [run for run in _runs(preview) if "pulumi preview" in run]
    assert "--policy-pack policy" in command
    assert any("policy/requirements.txt" in run for run in _runs(preview))
    deploy = _runs(_load(WORKFLOWS / "deploy-dev.yml")["jobs"]["up"])
    up = next(index for index, run in enumerate(deploy) if "pulumi up" in run)
    assert "--policy-pack policy" in deploy[up]
    assert any("policy/requirements.txt" in run for run in deploy[:up])
    (smoke,) = [run for run in deploy[up + 1 :] if "jan-server smoke" in run]
    assert "pulumi stack output gatewayUrl" in smoke
