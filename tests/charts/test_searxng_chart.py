"""SearXNG: the generated settings.yml (JSON on, limiter on, secret key and Valkey password from the
Secret) and a locked-down Valkey cache."""

from __future__ import annotations

import tomllib
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.charts.rendering import by_kind, one, pod_specs, render

MCP_TOOLS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jan"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "mcp-tools"}},
}


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render("searxng", values, release="searxng", namespace="search")


def _settings(objects: list[dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(one(objects, "ConfigMap")["data"]["settings.yml"])
    return loaded


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def test_settings_enable_json_the_limiter_and_valkey():
    settings = _settings(_render())
    assert settings["use_default_settings"] is True
    assert "json" in settings["search"]["formats"]
    assert settings["server"]["limiter"] is True
    assert settings["server"]["public_instance"] is False
    assert settings["valkey"]["url"] == "valkey://searxng-valkey:6379/0"
    assert "secret_key" not in settings["server"]


def test_limiter_passes_only_the_configured_clients():
    objects = _render({"limiter": {"passIp": ["10.0.0.0/16"], "trustedProxies": []}})
    limiter = tomllib.loads(one(objects, "ConfigMap")["data"]["limiter.toml"])
    assert limiter["botdetection"]["ip_lists"]["pass_ip"] == ["10.0.0.0/16"]
    assert limiter["botdetection"]["trusted_proxies"] == []


def test_secret_key_and_valkey_password_come_from_the_secret():
    objects = _render({"existingSecret": "jan-searxng"})
    searxng = one(objects, "Deployment", "searxng")
    env = _env(searxng)
    assert env["SEARXNG_SECRET"] == {"secretKeyRef": {"name": "jan-searxng", "key": "secret-key"}}
    assert env["VALKEY_PASSWORD"] == {"secretKeyRef": {"name": "jan-searxng", "key": "valkey-password"}}
    # Kubernetes expands $(VALKEY_PASSWORD) because it is declared first.
    names = list(env)
    assert names.index("VALKEY_PASSWORD") < names.index("SEARXNG_VALKEY_URL")
    assert env["SEARXNG_VALKEY_URL"] == "valkey://:$(VALKEY_PASSWORD)@searxng-valkey:6379/0"
    # Valkey reads its password from the mounted Secret: no environment variable, no argument.
    valkey = one(objects, "Deployment", "searxng-valkey")["spec"]["template"]["spec"]
    container = valkey["containers"][0]
    assert "env" not in container
    password = next(v for v in valkey["volumes"] if v["name"] == "password")
    assert password["secret"]["secretName"] == "jan-searxng"
    assert password["secret"]["items"] == [{"key": "valkey-password", "path": "valkey-password"}]
    script = container["args"][0]
    assert "requirepass" in script and "/run/secrets/valkey/valkey-password" in script
    assert "--save ''" in script and "allkeys-lru" in script
    assert not by_kind(objects, "Secret")


def test_user_settings_merge_but_cannot_drop_json_or_the_limiter():
    settings = _settings(_render({"settings": {"outgoing": {"request_timeout": 4.0}}}))
    assert settings["outgoing"]["request_timeout"] == 4.0 and "json" in settings["search"]["formats"]
    with pytest.raises(helm.HelmRenderError, match="must include json"):
        _render({"settings": {"search": {"formats": ["html"]}}})
    with pytest.raises(helm.HelmRenderError, match="limiter must stay on"):
        _render({"settings": {"server": {"limiter": False}}})
    with pytest.raises(helm.HelmValuesError, match="schema"):
        _render({"settings": {"server": {"secret_key": "in-values"}}})


def test_only_named_clients_reach_searxng_and_only_searxng_reaches_valkey():
    objects = _render(
        {
            "networkPolicy": {
                "ingressFrom": [MCP_TOOLS],
                "internetCidr": "0.0.0.0/0",
                "internetExcept": ["10.0.0.0/8"],
            }
        }
    )
    searxng = one(objects, "NetworkPolicy", "searxng")["spec"]
    assert searxng["ingress"] == [{"from": [MCP_TOOLS], "ports": [{"protocol": "TCP", "port": 8080}]}]
    internet = searxng["egress"][-1]
    assert internet["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]
    assert {p["port"] for p in internet["ports"]} == {80, 443}
    valkey = one(objects, "NetworkPolicy", "searxng-valkey")["spec"]
    assert valkey["egress"] == []
    assert valkey["ingress"][0]["from"] == [
        {"podSelector": {"matchLabels": searxng["podSelector"]["matchLabels"]}}
    ]
    assert one(_render(), "NetworkPolicy", "searxng")["spec"]["ingress"] == []


def test_both_workloads_are_hardened():
    for workload, pod in pod_specs(_render()):
        where = workload["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, where
        assert container["resources"]["limits"], where
        assert container["readinessProbe"] and container["livenessProbe"], where


def test_config_is_mounted_read_only_where_searxng_looks():
    pod = one(_render(), "Deployment", "searxng")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/etc/searxng"]["readOnly"] is True
    assert {"/var/cache/searxng", "/tmp"} <= set(mounts)
