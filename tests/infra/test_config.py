"""Stack files parse; every invalid config fails with a message naming the key; docs match the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra import docs
from infra.config import (
    REPO_ROOT,
    ConfigError,
    StackConfig,
    load_from_pulumi,
    load_stack_file,
    parse,
    stack_file,
    stack_values,
)

VALID: dict[str, Any] = yaml.safe_load(stack_file("staging").read_text())["config"]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_file_parses(stack: str) -> None:
    config = load_stack_file(stack_file(stack))
    assert config.environment.value == stack


def test_every_stack_file_is_covered() -> None:
    files = {REPO_ROOT / "Pulumi.dev.yaml", *(REPO_ROOT / "stacks").glob("Pulumi.*.yaml")}
    assert {path.name for path in files} == {"Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"}


def _with(**changes: Any) -> dict[str, Any]:
    values = dict(VALID)
    for key, value in changes.items():
        full = f"jan-server:{key}"
        if value is None:
            values.pop(full, None)
        else:
            values[full] = value
    return values


CLUSTER = VALID["jan-server:cluster"]
POOL = VALID["jan-server:gpuPools"][0]

INVALID = [
    (_with(bogus=1), "jan-server:bogus: unknown key"),
    (_with(owner=None), "jan-server:owner: Field required"),
    (_with(environment="qa"), "jan-server:environment: Input should be 'dev', 'staging' or 'prod'"),
    (_with(domain="Not A Domain"), "jan-server:domain: String should match pattern"),
    (_with(region=None), 'jan-server:region: is required when cluster.mode is "eks"'),
    (
        _with(cluster={**CLUSTER, "kubernetesVersion": "1.20"}),
        "jan-server:cluster.kubernetesVersion: must be one of",
    ),
    (
        _with(cluster={**CLUSTER, "systemNodes": {"diskGb": 50}}),
        "jan-server:cluster.systemNodes.diskGb: unknown key",
    ),
    (
        _with(cluster={**CLUSTER, "context": "kind-jan"}),
        'jan-server:cluster.context: applies only when cluster.mode is "existing"',
    ),
    (
        _with(cluster={**CLUSTER, "adminArns": ["bob"]}),
        "jan-server:cluster.adminArns: 'bob' is not an IAM principal ARN",
    ),
    (
        _with(cluster={"mode": "existing", "kubernetesVersion": "1.33"}),
        'jan-server:cluster.context: is required when cluster.mode is "existing"',
    ),
    (
        _with(
            cluster={"mode": "existing", "kubernetesVersion": "1.33", "context": "kind"},
            region=None,
            network=None,
        ),
        'jan-server:gpuPools: needs cluster.mode "eks"',
    ),
    (
        _with(
            cluster={"mode": "existing", "kubernetesVersion": "1.33", "context": "kind"},
            region=None,
            network=None,
            gpuPools=None,
            inference={"accelerator": "cpu"},
        ),
        'jan-server:database.mode: rds needs cluster.mode "eks"',
    ),
    (
        _with(gpuPools=[{**POOL, "scaling": {"minSize": 3, "desiredSize": 1, "maxSize": 4}}]),
        "jan-server:gpuPools[0].scaling.desiredSize: must satisfy minSize <= desiredSize <= maxSize",
    ),
    (
        _with(gpuPools=[{**POOL, "ami": "ubuntu"}]),
        "jan-server:gpuPools[0].ami: Input should be 'al2023' or 'bottlerocket'",
    ),
    (_with(gpuPools=[POOL, POOL]), "jan-server:gpuPools[1].name: duplicate pool name 'l4'"),
    (_with(gpuPools=[]), "jan-server:inference.accelerator: gpu needs at least one entry in gpuPools"),
    (
        _with(network={"cidr": "10.0.0.0/8"}),
        "jan-server:network.cidr: prefix length must be between /16 and /20",
    ),
    (
        _with(network={"availabilityZones": 4}),
        "jan-server:network.availabilityZones: Input should be less than or equal to 3",
    ),
    (
        _with(database={"mode": "rds", "storageGib": 100, "maxStorageGib": 50}),
        "jan-server:database.maxStorageGib: must be at least storageGib",
    ),
    (
        _with(environment="prod", database={"mode": "rds", "backupRetentionDays": 3}),
        "jan-server:database.backupRetentionDays: must be at least 7 in prod",
    ),
    (_with(objectStore={"mode": "gcs"}), "jan-server:objectStore.mode: Input should be 's3' or 'in-cluster'"),
]


@pytest.mark.parametrize(
    ("values", "message"), INVALID, ids=[message.split(":")[1] for _, message in INVALID]
)
def test_invalid_config_names_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as failure:
        parse(values)
    assert message in str(failure.value)


def test_values_arrive_as_json_strings_under_pulumi() -> None:
    encoded = {key: value if isinstance(value, str) else json.dumps(value) for key, value in VALID.items()}
    assert parse(encoded) == parse(VALID)


def test_pulumi_yaml_declares_every_top_level_key_with_type_and_description() -> None:
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert set(declared) == {info.alias for info in StackConfig.model_fields.values()}
    assert all(entry["type"] and entry["description"] for entry in declared.values())
    assert declared["environment"]["type"] == "string"
    assert declared["cluster"]["type"] == "object"
    assert declared["gpuPools"] == {
        "type": "array",
        "items": {"type": "object"},
        "description": StackConfig.model_fields["gpu_pools"].description,
        "default": [],
    }
    # Pulumi insists every declared key without a default is set by each stack.
    required = {info.alias for info in StackConfig.model_fields.values() if info.is_required()}
    assert {key for key, entry in declared.items() if "default" not in entry} == required
    assert project["main"] == "infra/" and project["runtime"]["options"]["virtualenv"] == ".venv"


def test_readme_and_pulumi_yaml_match_the_model() -> None:
    assert docs.main(["--check"]) == 0, "run `make docs`"
    readme = (REPO_ROOT / "README.md").read_text()
    platform = readme.split("<!-- platform:start -->")[1].split("<!-- platform:end -->")[0]
    for name in StackConfig.model_fields:
        alias = StackConfig.model_fields[name].alias
        assert f"| `{alias}` |" in platform


def test_docs_check_detects_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "README.md"
    stale.write_text((REPO_ROOT / "README.md").read_text().replace("| `owner` |", "| `owners` |"))
    monkeypatch.setattr(docs, "README", stale)
    assert docs.main(["--check"]) == 1


def test_the_program_reads_its_config_through_pulumis_public_api() -> None:
    values = stack_values(stack_file("prod"))
    encoded = {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
    pulumi.runtime.set_all_config(encoded)
    try:
        assert load_from_pulumi() == parse(values)
    finally:
        pulumi.runtime.set_all_config({})
