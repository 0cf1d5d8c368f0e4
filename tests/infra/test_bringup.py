"""Bring-up ordering as a property of every stack's dependency graph (issue 19, items 1, 3, 4, 9).

On an empty account `pulumi up` creates everything at once, ordered only by dependencies: a release
that does not wait for the nodes it runs on, or for CoreDNS, starts its Helm timeout before there is
anywhere to run; an app release that waits for a model server waits for a cold GPU start.
"""

from __future__ import annotations

import json
import re

import pytest

from infra import mock_engine, registry
from infra.config import load_stack_file, stack_file, stack_values
from infra.helm import OUR_CHARTS_DIR, TIMEOUTS
from infra.naming import Naming
from infra.specs.vllm import IMAGE_PULL_SECONDS, NODE_PROVISION_SECONDS
from infra.versions import CHARTS
from tests.infra.bringup_graph import Graph, graph_of
from tests.infra.conftest import STACKS

AWS_STACKS = ("staging", "prod")
MODEL_SERVER = "model-server"


@pytest.fixture(scope="module")
def graphs() -> dict[str, Graph]:
    return {stack: graph_of(stack) for stack in STACKS}


def _label(record: mock_engine.Record) -> str:
    return f"{record.type.rsplit(':', 1)[1]} {record.name}"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_release_and_workload_waits_for_its_pool_and_coredns(
    graphs: dict[str, Graph], stack: str
) -> None:
    graph = graphs[stack]
    pools = graph.node_groups()
    coredns = graph.addon("coredns")
    assert coredns is not None and "system" in pools
    late = []
    for workload in graph.workloads():
        waits = graph.waits_for(workload)
        needed = {pools[pool].urn for pool in graph.pools_of(workload)} | {coredns.urn}
        missing = needed - waits
        if missing:
            late.append(
                f"{_label(workload)} does not wait for {sorted(graph.by_urn[urn].name for urn in missing)}"
            )
    assert not late, "\n".join(late)


def test_an_existing_cluster_has_no_pools_to_wait_for(graphs: dict[str, Graph]) -> None:
    # dev deploys to a running cluster (kind/k3d): its nodes and DNS exist before `pulumi up`.
    assert not graphs["dev"].node_groups() and graphs["dev"].addon("coredns") is None


@pytest.mark.parametrize("stack", STACKS)
def test_no_app_release_waits_for_a_model_server(graphs: dict[str, Graph], stack: str) -> None:
    graph = graphs[stack]
    servers = {
        record.urn
        for record in graph.records
        if record.type == "kubernetes:apps/v1:Deployment"
        and record.inputs["metadata"]["labels"].get("app.kubernetes.io/component") == MODEL_SERVER
    }
    assert servers
    apps = [record for record in graph.releases() if record.inputs["chart"] == "charts/jan-app"]
    assert len(apps) == 4
    for app in apps:
        assert not graph.waits_for(app) & servers, f"{app.name} waits for a model server"


@pytest.mark.parametrize("stack", STACKS)
def test_response_api_rolls_out_after_the_apps_it_calls(graphs: dict[str, Graph], stack: str) -> None:
    # A new response-api may use a newer llm-api route (appends that create a conversation): on
    # `pulumi up` llm-api and mcp-tools roll out first. llm-api and media-api call each other, so
    # neither may wait for the other (a cycle Pulumi would refuse).
    graph = graphs[stack]
    apps = {record.name: record for record in graph.releases() if record.inputs["chart"] == "charts/jan-app"}
    waits = {name: {graph.by_urn[urn].name for urn in graph.waits_for(app)} for name, app in apps.items()}
    assert {"llm-api", "mcp-tools"} <= waits["response-api"]
    assert not waits["llm-api"] & set(apps) and not waits["media-api"] & set(apps)


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_has_an_explicit_timeout(graphs: dict[str, Graph], stack: str) -> None:
    for release in graphs[stack].releases():
        assert release.inputs.get("timeout", 0) > 300, f"{release.name}: Helm's default 300 s"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_model_servers_may_take_a_cold_start(graphs: dict[str, Graph], stack: str) -> None:
    for record in graphs[stack].of_type("kubernetes:apps/v1:Deployment"):
        if record.inputs["metadata"]["labels"].get("app.kubernetes.io/component") != MODEL_SERVER:
            continue
        (container,) = record.inputs["spec"]["template"]["spec"]["containers"]
        probe = container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        timeouts = record.options["customTimeouts"]
        for key in ("create", "update"):
            seconds = int(re.fullmatch(r"(\d+)s", timeouts[key]).group(1))  # type: ignore[union-attr]
            assert seconds >= NODE_PROVISION_SECONDS + IMAGE_PULL_SECONDS + probe


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_load_balancer_services_wait_for_their_controller(graphs: dict[str, Graph], stack: str) -> None:
    graph = graphs[stack]
    (controller,) = [r for r in graph.releases() if r.name == "aws-load-balancer-controller"]
    kong = graph.by_urn[next(r.urn for r in graph.releases() if r.name == "kong")]
    (public,) = [
        r
        for r in graph.of_type("kubernetes:core/v1:Service")
        if r.inputs["spec"].get("type") == "LoadBalancer" and "$expanded::" not in r.urn  # not Kong's own
    ]
    for record in (kong, public):
        assert controller.urn in graph.waits_for(record), record.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_platform_pulls_from_a_registry_it_does_not_create(graphs: dict[str, Graph], stack: str) -> None:
    """Item 1: the registry is its own project, up (and pushed to) before the platform."""
    graph = graphs[stack]
    assert not graph.of_type("aws:ecr/repository:Repository")
    config = load_stack_file(stack_file(stack))
    created = mock_engine.run(
        registry.main, stack=stack, config=stack_values(stack_file(stack)), region=config.region or ""
    )
    (repository,) = [r for r in created if r.type == "aws:ecr/repository:Repository"]
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    url = f"{mock_engine.ACCOUNT}.dkr.ecr.{config.region}.amazonaws.com/{repository.inputs['name']}"
    for app in (r for r in graph.releases() if r.inputs["chart"] == "charts/jan-app"):
        assert app.inputs["values"]["image"] == {"repository": url, "tag": config.release.image_tag}


def test_a_missing_image_stops_the_run_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mock_engine._Answers, "image_pushed", False)
    with pytest.raises(Exception, match=r"jan-staging-server:0\.1\.0.*registry") as caught:
        graph_of("staging")
    assert "pulumi up -C registry" in str(caught.value)
    naming = Naming(load_stack_file(stack_file("staging")).environment, "x")
    assert registry.repository_name(naming) == "jan-staging-server"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_each_admin_gets_one_access_entry(graphs: dict[str, Graph], stack: str) -> None:
    """Item 9: the deployer in adminArns must not collide with EKS's own creator entry."""
    graph = graphs[stack]
    (cluster,) = graph.of_type("aws:eks/cluster:Cluster")
    creator_entry = cluster.inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"]
    principals = [r.inputs["principalArn"] for r in graph.of_type("aws:eks/accessEntry:AccessEntry")]
    assert len(principals) == len(set(principals))
    assert not (creator_entry and mock_engine.CALLER_ROLE in principals)
    assert creator_entry or mock_engine.CALLER_ROLE in principals  # the deployer keeps admin access
    config = load_stack_file(stack_file(stack))
    assert set(config.cluster.admin_arns) <= set(principals)
    # Without EKS's creator entry, nothing may reach the cluster before the deployer's access exists.
    (access,) = [
        r
        for r in graph.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
        if r.inputs["principalArn"] == mock_engine.CALLER_ROLE
    ]
    for workload in graph.workloads():
        assert access.urn in graph.waits_for(workload), workload.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_network_policies_are_enforced_on_eks(graphs: dict[str, Graph], stack: str) -> None:
    """Item 5: the VPC CNI enforces NetworkPolicies only with its network policy agent on."""
    cni = graphs[stack].addon("vpc-cni")
    assert cni is not None
    assert json.loads(cni.inputs["configurationValues"])["enableNetworkPolicy"] == "true"


def test_every_pinned_chart_and_ours_has_a_measured_timeout() -> None:
    charts = {pin.chart for pin in CHARTS.values()} | {
        path.parent.name for path in OUR_CHARTS_DIR.glob("*/Chart.yaml")
    }
    released = charts - {"searxng", "sandboxfusion"}  # rendered by Pulumi (helm.v3.Chart), not Helm releases
    assert released <= set(TIMEOUTS), released - set(TIMEOUTS)
