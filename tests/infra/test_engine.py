"""The offline engine's contracts: loud failures, schemas for every supported version, naming."""

from __future__ import annotations

import kubernetes_validate
import pulumi_aws as aws
import pytest

from infra import mock_engine
from infra.cluster_config import SUPPORTED_KUBERNETES
from infra.config import Environment
from infra.naming import Naming


def test_an_invoke_without_an_answer_fails_the_render() -> None:
    def program() -> None:
        aws.get_partition()

    with pytest.raises(NotImplementedError, match="no answer for the invoke aws:index/getPartition"):
        mock_engine.run(program, stack="unit", config={}, region="eu-west-1")


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_every_supported_kubernetes_version_has_strict_schemas(version: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "jan"}}
    kubernetes_validate.validate(namespace, f"{version}.0", strict=True)


def test_names_tags_and_labels_come_from_one_helper() -> None:
    naming = Naming(Environment.STAGING, "team@example.com")
    assert naming("gpu", "l4") == "jan-staging-gpu-l4"
    assert naming.default_tags == {
        "environment": "staging",
        "project": "jan-server",
        "owner": "team@example.com",
        "managed-by": "pulumi",
    }
    assert naming.tags("vpc") == {"Name": "jan-staging-vpc"}
    assert naming.labels("apps")["app.kubernetes.io/part-of"] == "jan-server"
    assert all("@" not in value for value in naming.labels("apps").values())  # owner is no label value
