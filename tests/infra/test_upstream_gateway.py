"""The gateway's values against the real Kong chart: what the NLB sends reaches a port Kong listens on."""

from __future__ import annotations

from typing import Any

import pytest

from infra.versions import IMAGES
from tests.infra.conftest import Rendered
from tests.infra.services_helpers import values
from tests.infra.upstream_charts import container_ports, containers, one, render


def _kong(rendered: Rendered) -> list[dict[str, Any]]:
    return render("kong", values(rendered, "kong"), name="kong", namespace="gateway")


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    (proxy,) = [c for c in containers(deployment) if c["name"] == "proxy"]
    return {e["name"]: e.get("value", "") for e in proxy.get("env", [])}


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_nlb_listener_reaches_a_plain_http_port_kong_listens_on(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    objects = _kong(rendered[stack])
    deployment = one(objects, "Deployment")
    service = one(objects, "Service", "kong-kong-proxy")
    ports = container_ports(deployment)
    assert service["spec"]["type"] == "LoadBalancer"
    by_port = {port["port"]: port for port in service["spec"]["ports"]}
    assert set(by_port) == {443}, "the NLB listens on 443 only"
    target = str(by_port[443]["targetPort"])
    assert target in ports, f"Service 443 targets {target}; Kong declares {sorted(ports)}"
    # TLS ends at the NLB: the decrypted stream must reach a listener without `ssl`.
    listen = [part.strip() for part in _env(deployment)["KONG_PROXY_LISTEN"].split(",")]
    plain = [part for part in listen if part.endswith(f":{ports[target]}")]
    assert plain and all("ssl" not in part.split() for part in plain), listen


def test_dev_proxy_is_a_cluster_ip_on_plain_http(rendered: dict[str, Rendered]) -> None:
    objects = _kong(rendered["dev"])
    service = one(objects, "Service", "kong-kong-proxy")
    ports = container_ports(one(objects, "Deployment"))
    assert service["spec"]["type"] == "ClusterIP"
    for port in service["spec"]["ports"]:
        assert str(port["targetPort"]) in ports


def test_kong_runs_the_pinned_image(prod: Rendered) -> None:
    deployment = one(_kong(prod), "Deployment")
    images = {c["name"]: c["image"] for c in containers(deployment)}
    assert images["proxy"] == IMAGES["kong"].ref
    assert IMAGES["kong"].tag == "3.9.3"  # the last 3.9 patch (nginx CVE fixes)
