"""The workflows deploy what the stacks expect (issue 19, items 2 and 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.config import REPO_ROOT, load_stack_file, stack_file
from tests.infra.conftest import Rendered
from tests.infra.services_helpers import manifests

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
AWS_STACKS = ("staging", "prod")


def _workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(Path(WORKFLOWS / name).read_text())
    return loaded


def _steps_text(job: dict[str, Any]) -> str:
    return "\n".join(yaml.safe_dump(step) for step in job["steps"])


def test_each_stack_gets_the_image_in_its_own_region_independently() -> None:
    """Item 2: staging's registry is in eu-west-1; one failed push must not keep prod's image back."""
    job = _workflow("ci.yml")["jobs"]["image"]
    strategy = job["strategy"]
    assert strategy["fail-fast"] is False
    matrix = {(entry["stack"], entry["region"]) for entry in strategy["matrix"]["include"]}
    assert matrix == {(stack, load_stack_file(stack_file(stack)).region) for stack in AWS_STACKS}
    (login,) = [step for step in job["steps"] if step.get("uses", "").startswith("aws-actions/configure-aws")]
    assert login["with"]["aws-region"] == "${{ matrix.region }}"
    (push,) = [step for step in job["steps"] if "docker push" in step.get("run", "")]
    assert push["env"]["REPOSITORY"] == "jan-${{ matrix.stack }}-server"
    assert "for stack in" not in _steps_text(job)


def test_the_dev_deploy_uses_its_cluster_and_an_image_it_built() -> None:
    """Item 12: the stack file names a local kind context and a locally loaded image."""
    job = _workflow("deploy-dev.yml")["jobs"]["up"]
    steps = job["steps"]
    (build,) = [step for step in steps if step.get("uses", "").startswith("docker/build-push-action")]
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == "${{ env.IMAGE_REPOSITORY }}:${{ env.VERSION }}"
    (up,) = [step for step in steps if "pulumi up" in step.get("run", "")]
    command = up["run"]
    assert "--config-path" in command
    assert '"jan-server:cluster.context=$KUBE_CONTEXT"' in command
    assert '"jan-server:release.imageRepository=$IMAGE_REPOSITORY"' in command
    assert '"jan-server:release.imageTag=$VERSION"' in command
    kubeconfig = next(step for step in steps if "DEV_KUBECONFIG" in step.get("run", ""))
    assert "KUBE_CONTEXT=$(kubectl config current-context)" in kubeconfig["run"]
    assert job["permissions"]["packages"] == "write"


def test_sandbox_fusion_runs_only_where_its_amd64_image_can(rendered: dict[str, Rendered]) -> None:
    """Item 12: the image has no arm64 build; on an arm64 node it would crash-loop, not run."""
    for stack in ("dev", "staging", "prod"):
        (deployment,) = manifests(rendered[stack], "sandbox", "Deployment")
        assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
