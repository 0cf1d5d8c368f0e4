"""Node autoscaling, resource metrics and load balancers on EKS (issue 13, items 12-14), checked
against the pinned upstream charts rendered with exactly the values the program passes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components.cluster_addons import (
    AUTOSCALER_ACCOUNT,
    LB_CONTROLLER_ACCOUNT,
    NAMESPACE,
    autoscaler_policy,
    autoscaler_values,
    load_balancer_controller_policy,
    load_balancer_controller_values,
    nlb_annotations,
)
from infra.config import load_stack_file, stack_file
from infra.versions import CHARTS, CLUSTER_AUTOSCALER
from tests.infra.conftest import Rendered
from tests.infra.services_helpers import manifests, values
from tests.infra.upstream_charts import chart_yaml, render

AWS_STACKS = ("staging", "prod")
CLUSTER = "jan-prod-eks"
# What the AWS Load Balancer Controller reads on a Service (its annotations reference).
LB_CONTROLLER_READS = {
    "service.beta.kubernetes.io/aws-load-balancer-type",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type",
    "service.beta.kubernetes.io/aws-load-balancer-scheme",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-ports",
    "service.beta.kubernetes.io/aws-load-balancer-backend-protocol",
    "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes",
}


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [item for item in objects if item["kind"] == kind]
    return found


@pytest.mark.parametrize("minor", sorted(CLUSTER_AUTOSCALER))
def test_the_autoscaler_matches_the_cluster_minor(minor: str) -> None:
    assert str(chart_yaml(f"cluster-autoscaler-{minor}")["appVersion"]).startswith(f"{minor}.")
    assert CLUSTER_AUTOSCALER[minor] == CHARTS[f"cluster-autoscaler-{minor}"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_eks_stack_runs_an_autoscaler_for_its_pools(rendered: dict[str, Rendered], stack: str) -> None:
    """Item 12: a pool at zero nodes (prod's `l40s`) grows only if an autoscaler runs."""
    config = load_stack_file(stack_file(stack))
    (release,) = [
        r
        for r in rendered[stack].of_type("kubernetes:helm.sh/v3:Release")
        if r["name"] == "cluster-autoscaler"
    ]
    pin = CLUSTER_AUTOSCALER[config.cluster.kubernetes_version]
    assert (release["inputs"]["chart"], release["inputs"]["version"]) == (pin.chart, pin.version)
    assert release["inputs"]["namespace"] == NAMESPACE
    (association,) = [
        r["inputs"]
        for r in rendered[stack].of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r["inputs"]["serviceAccount"] == AUTOSCALER_ACCOUNT
    ]
    assert association["namespace"] == NAMESPACE


def test_the_autoscaler_chart_discovers_this_clusters_groups() -> None:
    objects = render(
        "cluster-autoscaler-1.34",
        autoscaler_values(CLUSTER, "us-east-1"),
        name="cluster-autoscaler",
        namespace=NAMESPACE,
    )
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["command"] + container.get("args", [])
    assert "--cloud-provider=aws" in args
    tags = f"k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{CLUSTER}"
    discovery = f"--node-group-auto-discovery=asg:tag={tags}"
    assert discovery in args
    assert "--expander=least-waste" in args and "--skip-nodes-with-system-pods=false" in args
    assert container["image"].endswith(":v1.34.2")
    assert pod["serviceAccountName"] == AUTOSCALER_ACCOUNT
    assert _one(objects, "ServiceAccount")["metadata"]["name"] == AUTOSCALER_ACCOUNT
    assert pod["nodeSelector"] == {"jan.ai/pool": "system"}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "300Mi"}
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    assert env["AWS_REGION"] == "us-east-1"


def test_the_load_balancer_controller_chart_runs_for_this_cluster() -> None:
    objects = render(
        "aws-load-balancer-controller",
        load_balancer_controller_values(CLUSTER, "us-east-1", "vpc-123"),
        name="aws-load-balancer-controller",
        namespace=NAMESPACE,
    )
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert f"--cluster-name={CLUSTER}" in container["args"]
    assert "--aws-vpc-id=vpc-123" in container["args"] and "--aws-region=us-east-1" in container["args"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == LB_CONTROLLER_ACCOUNT
    assert pod["nodeSelector"] == {"jan.ai/pool": "system"}
    webhooks = [w["name"] for w in _one(objects, "MutatingWebhookConfiguration")["webhooks"]]
    assert not any(name.startswith("mservice.") for name in webhooks), webhooks
    assert not [item for item in objects if item["kind"] == "IngressClass"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_load_balancer_services_carry_only_the_controllers_annotations(
    rendered: dict[str, Rendered], stack: str
) -> None:
    """Item 14: one controller, its own annotations; `type: nlb` belongs to the in-tree provider."""
    kong = values(rendered[stack], "kong")["proxy"]
    (keycloak,) = [
        s for s in manifests(rendered[stack], "identity", "Service") if s["spec"]["type"] == "LoadBalancer"
    ]
    for found in (kong["annotations"], keycloak["metadata"]["annotations"]):
        lb = {key for key in found if key.startswith("service.beta.kubernetes.io/aws-load-balancer")}
        assert lb <= LB_CONTROLLER_READS, lb - LB_CONTROLLER_READS
        assert found["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    assert set(nlb_annotations("arn")) <= LB_CONTROLLER_READS
    (release,) = [
        r
        for r in rendered[stack].of_type("kubernetes:helm.sh/v3:Release")
        if r["name"] == "aws-load-balancer-controller"
    ]
    assert release["inputs"]["version"] == CHARTS["aws-load-balancer-controller"].version
    accounts = {
        r["inputs"]["serviceAccount"]
        for r in rendered[stack].of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    assert LB_CONTROLLER_ACCOUNT in accounts


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_hpas_have_resource_metrics(rendered: dict[str, Rendered], stack: str) -> None:
    """Item 13: the apps' CPU HPAs read metrics-server, the EKS add-on."""
    hpas = manifests(rendered[stack], "jan", "HorizontalPodAutoscaler")
    assert hpas
    addons = {r["inputs"]["addonName"] for r in rendered[stack].of_type("aws:eks/addon:Addon")}
    assert "metrics-server" in addons
    for hpa in hpas:
        assert {metric["type"] for metric in hpa["spec"]["metrics"]} == {"Resource"}


def test_the_policies_are_plain_json() -> None:

    scaler = json.loads(autoscaler_policy(CLUSTER))
    condition = scaler["Statement"][1]["Condition"]["StringEquals"]
    assert condition == {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}": "owned"}
    assert json.loads(load_balancer_controller_policy(CLUSTER))["Statement"]
