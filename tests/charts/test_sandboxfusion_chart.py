"""SandboxFusion: its own namespace, reachable only from mcp-tools, no egress, bounded, no token."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.charts.rendering import one, render


def _render(values: dict[str, Any] | None = None, namespace: str = "sandbox") -> list[dict[str, Any]]:
    return render("sandboxfusion", values, release="sandboxfusion", namespace=namespace)


def test_only_mcp_tools_pods_in_mcp_tools_namespace_get_in_and_nothing_gets_out():
    policy = one(_render(), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == []
    (rule,) = policy["ingress"]
    # One peer carrying both selectors: the pod must match both (two peers would allow either).
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jan"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mcp-tools"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert policy["podSelector"]["matchLabels"] == one(_render(), "Service")["spec"]["selector"]


def test_pod_has_no_token_limits_and_a_read_only_root():
    objects = _render()
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"] == "docker.io/volcengine/sandbox-fusion:server-20250609"
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ping"
    assert {"name": "HOST", "value": "0.0.0.0"} in container["env"]


def test_refuses_to_share_its_clients_namespace():
    with pytest.raises(helm.HelmRenderError, match="namespace of its own"):
        _render(namespace="jan")


@pytest.mark.parametrize(
    "values",
    [
        {"allowedClients": {"namespace": "jan", "podLabels": {"app.kubernetes.io/name": None}}},
        {"allowedClients": {"namespace": "", "podLabels": {"app": "x"}}},
        {"image": {"tag": "latest"}},
        {"resources": {"limits": {"memory": None}}},
        {"securityContext": {"runAsUser": 0, "runAsGroup": 0}},
    ],
    ids=lambda v: str(v)[:60],
)
def test_schema_rejects_widening_or_floating(values):
    with pytest.raises(helm.HelmValuesError, match="schema"):
        _render(values)


def test_runtime_class_for_gvisor():
    pod = one(_render({"runtimeClassName": "gvisor"}), "Deployment")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "gvisor"
