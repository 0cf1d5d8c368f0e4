"""NetworkPolicies: every manifest is schema-valid, and the allowed flows are exactly the data flows."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest

from apps.gateway.routes import APPS, AppName
from infra.specs.network_policies import (
    External,
    NetworkInputs,
    Workload,
    namespace_manifests,
    network_policies,
)

INPUTS = NetworkInputs()
POLICIES = network_policies(INPUTS)
Pod = tuple[str, Mapping[str, str]]


def _pod(workload: Workload) -> Pod:
    return workload.namespace, workload.labels


APP = {app: _pod(INPUTS.app(app)) for app in AppName}
KONG, SANDBOX, SEARXNG, VALKEY = (
    _pod(w) for w in (INPUTS.kong, INPUTS.sandbox, INPUTS.searxng, INPUTS.valkey)
)
KEYCLOAK, MODELS, COLLECTOR = (_pod(w) for w in (INPUTS.keycloak, INPUTS.model_servers, INPUTS.collector))
assert isinstance(INPUTS.postgres, Workload) and isinstance(INPUTS.object_store, Workload)
POSTGRES, S3 = _pod(INPUTS.postgres), _pod(INPUTS.object_store)
DNS: Pod = ("kube-system", {"k8s-app": "kube-dns"})
OUTSIDE: Pod = ("default", {"app": "anything"})


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, target: Pod | str) -> bool:
    if isinstance(target, str):  # an IP address outside the cluster
        if "ipBlock" not in peer:
            return False
        address = ipaddress.ip_address(target)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if "ipBlock" in peer:
        return False  # pod addresses are private, which public ip blocks exclude
    namespace, labels = target
    if "namespaceSelector" in peer:
        namespace_ok = _labels_match(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        namespace_ok = namespace == policy_ns
    return namespace_ok and _labels_match(peer.get("podSelector", {}), labels)


def _side_allows(direction: str, subject: Pod, other: Pod | str, port: int, protocol: str) -> bool:
    kind, peers_key = ("Egress", "to") if direction == "egress" else ("Ingress", "from")
    namespace, labels = subject
    selecting = [
        policy
        for policy in POLICIES
        if policy["metadata"]["namespace"] == namespace
        and kind in policy["spec"]["policyTypes"]
        and _labels_match(policy["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            ports = rule.get("ports")
            port_ok = ports is None or any(p["port"] == port and p["protocol"] == protocol for p in ports)
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(_peer_matches(peer, namespace, other) for peer in peers)
            if port_ok and peer_ok:
                return True
    return False


def allowed(source: Pod, destination: Pod | str, port: int, protocol: str = "TCP") -> bool:
    if not _side_allows("egress", source, destination, port, protocol):
        return False
    return isinstance(destination, str) or _side_allows("ingress", destination, source, port, protocol)


def test_every_manifest_is_schema_valid() -> None:
    for manifest in POLICIES + namespace_manifests(INPUTS):
        kubernetes_validate.validate(manifest, "1.31.0", strict=True)
    names = [(policy["metadata"]["namespace"], policy["metadata"]["name"]) for policy in POLICIES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("source", "destination", "port"),
    [
        *[(KONG, APP[app], APPS[app].port) for app in AppName],
        (OUTSIDE, KONG, 8000),
        (APP[AppName.RESPONSE_API], APP[AppName.LLM_API], 8080),
        (APP[AppName.RESPONSE_API], APP[AppName.MCP_TOOLS], 8091),
        (APP[AppName.LLM_API], APP[AppName.MEDIA_API], 8285),
        (APP[AppName.MCP_TOOLS], APP[AppName.MEDIA_API], 8285),  # file search over uploads
        (APP[AppName.MEDIA_API], APP[AppName.LLM_API], 8080),
        (APP[AppName.MCP_TOOLS], APP[AppName.LLM_API], 8080),
        *[(APP[app], POSTGRES, 5432) for app in AppName],
        *[(APP[app], COLLECTOR, 4318) for app in AppName],
        *[(APP[app], KEYCLOAK, 8080) for app in AppName],
        *[(APP[app], DNS, 53) for app in AppName],
        (KONG, COLLECTOR, 4318),
        (KEYCLOAK, POSTGRES, 5432),
        (APP[AppName.LLM_API], MODELS, 8000),
        (APP[AppName.MEDIA_API], S3, 8333),
        (APP[AppName.MCP_TOOLS], SEARXNG, 8080),
        (APP[AppName.MCP_TOOLS], SANDBOX, 8080),
        (SEARXNG, VALKEY, 6379),
        (("observability", {"app.kubernetes.io/name": "prometheus"}), MODELS, 8000),
        (("cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}), POSTGRES, 8000),
    ],
)
def test_data_flows_are_allowed(source: Pod, destination: Pod, port: int) -> None:
    assert allowed(source, destination, port)


@pytest.mark.parametrize(
    ("source", "destination", "port"),
    [
        (APP[AppName.LLM_API], SANDBOX, 8080),
        (APP[AppName.RESPONSE_API], SANDBOX, 8080),
        (KONG, SANDBOX, 8080),
        (OUTSIDE, SANDBOX, 8080),
        (APP[AppName.MEDIA_API], APP[AppName.MCP_TOOLS], 8091),
        (APP[AppName.RESPONSE_API], APP[AppName.MEDIA_API], 8285),
        (OUTSIDE, APP[AppName.LLM_API], 8080),
        (KONG, POSTGRES, 5432),
        (OUTSIDE, POSTGRES, 5432),
        (APP[AppName.LLM_API], VALKEY, 6379),
        (APP[AppName.LLM_API], SEARXNG, 8080),
        (KONG, MODELS, 8000),
        (APP[AppName.LLM_API], APP[AppName.MEDIA_API], 9999),
    ],
)
def test_other_flows_are_denied(source: Pod, destination: Pod, port: int) -> None:
    assert not allowed(source, destination, port)


def test_the_sandbox_reaches_nothing() -> None:
    for destination, port in [(DNS, 53), (COLLECTOR, 4318), (APP[AppName.LLM_API], 8080), (POSTGRES, 5432)]:
        assert not allowed(SANDBOX, destination, port)
        assert not allowed(SANDBOX, destination, port, "UDP")
    assert not allowed(SANDBOX, "93.184.216.34", 443)


def test_internet_egress_is_public_only_and_only_where_needed() -> None:
    tools = APP[AppName.MCP_TOOLS]
    assert allowed(tools, "93.184.216.34", 443)
    assert allowed(SEARXNG, "93.184.216.34", 443)
    assert allowed(MODELS, "93.184.216.34", 443)
    for private in ("169.254.169.254", "10.0.0.5", "172.20.1.1", "192.168.1.1", "100.64.0.1"):
        assert not allowed(tools, private, 443) and not allowed(tools, private, 80)
    assert not allowed(APP[AppName.LLM_API], "93.184.216.34", 443)
    assert not allowed(APP[AppName.RESPONSE_API], "93.184.216.34", 443)
    assert not allowed(KEYCLOAK, "93.184.216.34", 443)


def test_every_owned_namespace_is_default_denied() -> None:
    denied = {
        policy["metadata"]["namespace"]: policy["spec"]["policyTypes"]
        for policy in POLICIES
        if policy["metadata"]["name"] == "default-deny"
    }
    for namespace in ("jan", "gateway", "identity", "inference", "search", "sandbox"):
        assert denied[namespace] == ["Ingress", "Egress"]
        assert any(
            p["spec"]["podSelector"] == {} for p in POLICIES if p["metadata"]["namespace"] == namespace
        )
    assert denied["data"] == ["Ingress"]
    assert "observability" not in denied


def test_pod_security_labels() -> None:
    labels = {ns["metadata"]["name"]: ns["metadata"]["labels"] for ns in namespace_manifests(INPUTS)}
    assert labels["jan"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["sandbox"]["pod-security.kubernetes.io/enforce"] == "baseline"
    for namespace_labels in labels.values():
        assert namespace_labels["pod-security.kubernetes.io/warn"] == "restricted"
        assert namespace_labels["pod-security.kubernetes.io/enforce-version"] == "v1.31"


def test_external_database_and_object_store() -> None:
    inputs = NetworkInputs(
        postgres=External(cidrs=("10.20.0.0/16",), ports=(5432,)),
        object_store=External(cidrs=("52.216.0.0/15",), ports=(443,)),
        llm_upstreams=External(cidrs=("0.0.0.0/0",), ports=(443,)),
    )
    policies = network_policies(inputs)
    for policy in policies:
        kubernetes_validate.validate(policy, "1.31.0", strict=True)
    assert not [policy for policy in policies if policy["metadata"]["namespace"] == "data"]
    by_name = {policy["metadata"]["name"]: policy for policy in policies}
    [rule] = by_name["allow-llm-api-to-postgres-egress"]["spec"]["egress"]
    assert rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert "allow-llm-api-to-upstreams-egress" in by_name
