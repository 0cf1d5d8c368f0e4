"""Network flows as data (issue 19, items 5 and 6): every stack's rendered NetworkPolicies allow exactly
the flows in the one list (`infra.specs.network_policies.flows` plus the platform's own), no more and
no fewer, on every port between every pair of the platform's workloads and outside addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from apps.gateway.routes import AppName
from infra.components.security import network_inputs, platform_flows
from infra.config import load_stack_file, stack_file
from infra.specs.network_policies import NON_PUBLIC_CIDRS, External, Flow, Workload, flows
from tests.infra.conftest import STACKS, Rendered
from tests.infra.policy_eval import Pod, allowed, isolated

POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
OUTSIDE: Pod = ("default", {"app": "anything"})
PUBLIC_ADDRESS = "93.184.216.34"


def _pod(workload: Workload) -> Pod:
    return workload.namespace, dict(workload.labels)


def _same(a: Pod, b: Pod) -> bool:
    return a[0] == b[0] and dict(a[1]) == dict(b[1])


def _selects(workload: Workload, pod: Pod) -> bool:
    """A flow's end selects a pod: same namespace, and its labels among the pod's."""
    return workload.namespace == pod[0] and all(pod[1].get(k) == v for k, v in workload.labels.items())


def _addresses(external: External) -> Iterator[str]:
    for cidr in external.cidrs:
        network = ipaddress.ip_network(cidr)
        yield (
            PUBLIC_ADDRESS
            if network.prefixlen == 0
            else str(next(iter(network.hosts()), network.network_address))
        )


def _reaches(external: External, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for cidr in external.cidrs:
        public = cidr == "0.0.0.0/0"
        if ip in ipaddress.ip_network(cidr) and not (
            public and any(ip in ipaddress.ip_network(private) for private in NON_PUBLIC_CIDRS)
        ):
            return True
    return False


def _stack_flows(stack: str) -> list[Flow]:
    config = load_stack_file(stack_file(stack))
    inputs = network_inputs(config, "jan")
    return [*flows(inputs), *platform_flows(inputs, config)]


def _expected(
    found: list[Flow], policies: list[dict[str, Any]], source: Pod, target: Pod | str, port: int
) -> bool:
    for flow in found:
        if flow.port_list and port not in flow.port_list:
            continue
        if flow.source is None:
            if isolated(policies, source, "Egress"):
                continue
        elif not _selects(flow.source, source):
            continue
        destination = flow.destination
        if isinstance(target, str):
            if isinstance(destination, External) and _reaches(destination, target):
                return True
        elif isinstance(destination, Workload) and _selects(destination, target):
            return True
    return False


@pytest.mark.parametrize("stack", STACKS)
def test_policies_allow_exactly_the_listed_flows(rendered: dict[str, Rendered], stack: str) -> None:
    found = _stack_flows(stack)
    policies = [record["inputs"] for record in rendered[stack].of_type(POLICY)]
    pods: list[Pod] = [OUTSIDE]
    targets: list[Pod | str] = []
    ports = {9999}
    for flow in found:
        ports |= set(flow.port_list)
        for end in (flow.source, flow.destination):
            if isinstance(end, Workload) and end.labels and not any(_same(_pod(end), pod) for pod in pods):
                pods.append(_pod(end))
            elif isinstance(end, External):
                targets += [address for address in _addresses(end) if address not in targets]
    targets += pods[1:]
    wrong = []
    for source in pods:
        for target in targets:
            if not isolated(policies, source, "Egress") and (
                isinstance(target, str) or not isolated(policies, target, "Ingress")
            ):
                continue  # neither side is the platform's to restrict (e.g. Prometheus to itself)
            for port in sorted(ports):
                expected = _expected(found, policies, source, target, port)
                if allowed(policies, source, target, port) != expected:
                    wrong.append(
                        f"{source} -> {target}:{port} expected {'allowed' if expected else 'denied'}"
                    )
    assert not wrong, "\n".join(wrong[:40])


@pytest.mark.parametrize("stack", STACKS)
def test_file_search_reaches_media_api(rendered: dict[str, Rendered], stack: str) -> None:
    """Item 6: mcp-tools fetches uploaded files from media-api for file search."""
    inputs = network_inputs(load_stack_file(stack_file(stack)), "jan")
    policies = [record["inputs"] for record in rendered[stack].of_type(POLICY)]
    media = inputs.app(AppName.MEDIA_API)
    assert allowed(policies, _pod(inputs.app(AppName.MCP_TOOLS)), _pod(media), media.ports[0])


def test_every_flow_says_why() -> None:
    for stack in STACKS:
        names = [flow.name for flow in _stack_flows(stack)]
        assert len(names) == len(set(names))
        assert all(flow.why for flow in _stack_flows(stack))
