"""Evaluate NetworkPolicies the way Kubernetes does, for the flow tests: may this pod reach that one?

A pod is (namespace, labels); a destination outside the cluster is an IP address. A direction is
isolated for a pod when some policy of that type selects it; then one of their rules must allow the
peer and port. Only what the platform's policies use is modelled (matchLabels, ipBlock with except).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

Pod = tuple[str, Mapping[str, str]]
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, target: Pod | str) -> bool:
    if isinstance(target, str):
        if "ipBlock" not in peer:
            return False
        address = ipaddress.ip_address(target)
        block = peer["ipBlock"]
        excluded = any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
        return address in ipaddress.ip_network(block["cidr"]) and not excluded
    if "ipBlock" in peer:
        return False  # pod addresses are private: the platform's ip blocks are public or the VPC's nodes
    namespace, labels = target
    if "namespaceSelector" in peer:
        namespace_ok = _labels_match(peer["namespaceSelector"], {NAMESPACE_LABEL: namespace})
    else:
        namespace_ok = namespace == policy_ns
    return namespace_ok and _labels_match(peer.get("podSelector", {}), labels)


def selecting(policies: Sequence[Mapping[str, Any]], pod: Pod, kind: str) -> list[Mapping[str, Any]]:
    namespace, labels = pod
    return [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == namespace
        and kind in policy["spec"].get("policyTypes", ["Ingress"])
        and _labels_match(policy["spec"].get("podSelector", {}), labels)
    ]


def isolated(policies: Sequence[Mapping[str, Any]], pod: Pod, kind: str) -> bool:
    return bool(selecting(policies, pod, kind))


def _side_allows(
    policies: Sequence[Mapping[str, Any]], direction: str, subject: Pod, other: Pod | str, port: int
) -> bool:
    kind, peers_key = ("Egress", "to") if direction == "egress" else ("Ingress", "from")
    found = selecting(policies, subject, kind)
    if not found:
        return True
    for policy in found:
        for rule in policy["spec"].get(direction, []):
            ports = rule.get("ports")
            port_ok = not ports or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(_peer_matches(peer, subject[0], other) for peer in peers)
            if port_ok and peer_ok:
                return True
    return False


def allowed(policies: Sequence[Mapping[str, Any]], source: Pod, destination: Pod | str, port: int) -> bool:
    if not _side_allows(policies, "egress", source, destination, port):
        return False
    return isinstance(destination, str) or _side_allows(policies, "ingress", destination, source, port)
