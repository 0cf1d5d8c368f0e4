"""The policy pack: each rule with a resource from the offline render that passes and one that violates,
and the whole pack over the dev, staging and prod renders."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from policy import rules
from tests.infra.conftest import STACKS, Rendered
from tests.infra.policy_support import as_resources, violations


def mutated(record: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(record["inputs"])


def first(rendered: Rendered, type_: str, where: Any = lambda _: True) -> dict[str, Any]:
    return next(r for r in rendered.of_type(type_) if where(r))


@pytest.mark.parametrize("stack", STACKS)
def test_the_pack_passes_over_every_stack(rendered: dict[str, Rendered], stack: str) -> None:
    assert violations(rendered[stack].resources, stack) == {}


def test_floating_image_tags(prod: Rendered) -> None:
    deployment = first(prod, "kubernetes:apps/v1:Deployment")
    assert rules.no_floating_image_tags(deployment["type"], deployment["inputs"]) == []
    for image in ("ghcr.io/acme/app:latest", "ghcr.io/acme/app", "registry:5000/app"):
        props = mutated(deployment)
        props["spec"]["template"]["spec"]["containers"][0]["image"] = image
        assert rules.no_floating_image_tags(deployment["type"], props), image
    props = mutated(deployment)
    props["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/app@sha256:" + "a" * 64
    assert rules.no_floating_image_tags(deployment["type"], props) == []

    release = first(prod, rules.HELM_RELEASE)
    assert rules.no_floating_image_tags(release["type"], release["inputs"]) == []
    props = mutated(release)
    props["values"] = {**props.get("values", {}), "image": {"repository": "kong", "tag": "latest"}}
    assert rules.no_floating_image_tags(release["type"], props) == [
        "release value image.tag: uses the floating tag latest"
    ]


def test_gpu_node_groups_are_tainted(prod: Rendered) -> None:
    gpu = first(prod, "aws:eks/nodeGroup:NodeGroup", lambda r: "NVIDIA" in r["inputs"]["amiType"])
    assert rules.gpu_node_groups_tainted(gpu["type"], gpu["inputs"]) == []
    props = mutated(gpu)
    props["taints"] = []
    assert rules.gpu_node_groups_tainted(gpu["type"], props)
    system = first(prod, "aws:eks/nodeGroup:NodeGroup", lambda r: "NVIDIA" not in r["inputs"]["amiType"])
    assert rules.gpu_node_groups_tainted(system["type"], system["inputs"]) == []


def test_rds_is_encrypted_private_and_protected_in_prod(prod: Rendered) -> None:
    (database,) = prod.of_type("aws:rds/instance:Instance")
    assert rules.rds_hardened(database["type"], database["inputs"], "prod") == []
    props = mutated(database)
    props.update(storageEncrypted=False, publiclyAccessible=True, deletionProtection=False)
    assert len(rules.rds_hardened(database["type"], props, "prod")) == 3
    # Deletion protection is a production rule; staging may tear its database down.
    props = mutated(database)
    props["deletionProtection"] = False
    assert rules.rds_hardened(database["type"], props, "staging") == []


def test_load_balancer_services_speak_to_one_controller(prod: Rendered) -> None:
    service = first(
        prod, "kubernetes:core/v1:Service", lambda r: r["inputs"]["spec"].get("type") == "LoadBalancer"
    )
    assert rules.load_balancers_annotated(service["type"], service["inputs"]) == []
    props = mutated(service)
    props["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"] = "nlb"
    assert rules.load_balancers_annotated(service["type"], props)
    props = mutated(service)
    props["metadata"]["annotations"] = {}
    assert len(rules.load_balancers_annotated(service["type"], props)) == 3


def test_secrets_never_reach_pods_as_literal_values(prod: Rendered) -> None:
    deployment = first(prod, "kubernetes:apps/v1:Deployment")
    assert rules.secrets_not_in_plain_config(deployment["type"], deployment["inputs"]) == []
    props = mutated(deployment)
    props["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
        {"name": "DATABASE_PASSWORD", "value": "hunter2"}
    )
    assert rules.secrets_not_in_plain_config(deployment["type"], props) == [
        f"container {props['spec']['template']['spec']['containers'][0]['name']}: env DATABASE_PASSWORD "
        "is a literal value; use a Secret"
    ]
    config_map = {"kind": "ConfigMap", "data": {"SERPER_API_KEY": "abc"}}
    assert rules.secrets_not_in_plain_config("kubernetes:core/v1:ConfigMap", config_map)


def test_aws_resources_carry_owner_and_environment(prod: Rendered) -> None:
    resources = as_resources(prod.resources)
    assert rules.aws_resources_tagged(resources) == []
    (bucket,) = [r for r in resources if r.type == "aws:s3/bucket:Bucket"]
    untagged = rules.Resource(bucket.type, bucket.name, bucket.props, None, None)
    assert rules.aws_resources_tagged([untagged]) == [
        f"aws:s3/bucket:Bucket {bucket.name} uses the default AWS provider (no default tags)"
    ]
    blanked = rules.Resource(
        bucket.type,
        bucket.name,
        {**bucket.props, "tags": {"owner": ""}},
        bucket.provider_type,
        bucket.provider_props,
    )
    assert rules.aws_resources_tagged([blanked]) == [
        f"aws:s3/bucket:Bucket {bucket.name} lacks the tags owner"
    ]


def test_buckets_are_private_and_encrypted(prod: Rendered) -> None:
    resources = as_resources(prod.resources)
    assert rules.buckets_private_and_encrypted(resources) == []
    without_settings = [
        r for r in resources if "PublicAccessBlock" not in r.type and "ServerSideEncryption" not in r.type
    ]
    (bucket,) = [r for r in resources if r.type == "aws:s3/bucket:Bucket"]
    assert rules.buckets_private_and_encrypted(without_settings) == [
        f"bucket {bucket.name}: public access is not fully blocked",
        f"bucket {bucket.name}: no default server-side encryption",
    ]


REPO = Path(__file__).resolve().parents[2]
POLICY_PYTHON = Path(os.environ.get("JAN_POLICY_PYTHON", REPO / ".venv-policy" / "bin" / "python"))


def test_the_pack_reports_through_pulumi_policy_what_the_rules_report(prod: Rendered, tmp_path: Path) -> None:
    """The adapters in policy/__main__.py, run by the real `pulumi_policy` in the pack's own venv."""
    if not POLICY_PYTHON.exists():
        pytest.fail(
            f"the policy pack's virtualenv is missing ({POLICY_PYTHON}); `make policy-venv` builds it"
        )
    records = copy.deepcopy(prod.resources)
    deployment = next(r for r in records if r["type"] == "kubernetes:apps/v1:Deployment")
    deployment["inputs"]["spec"]["template"]["spec"]["containers"][0]["image"] = "jan-server:latest"
    block = next(r for r in records if r["type"].endswith("BucketPublicAccessBlock"))
    block["inputs"]["blockPublicPolicy"] = False
    database = next(r for r in records if r["type"] == "aws:rds/instance:Instance")
    database["inputs"]["deletionProtection"] = False
    planted = tmp_path / "resources.json"
    planted.write_text(json.dumps({"resources": records}))

    result = subprocess.run(
        [str(POLICY_PYTHON), "-m", "tests.infra.policy_adapter_check", str(planted), "prod"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = violations(records, "prod")
    assert {"no-floating-image-tags", "buckets-private-and-encrypted", "rds-hardened"} <= set(expected)
    assert json.loads(result.stdout) == expected
