"""Each invariant check catches a planted violation and accepts the corrected object."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest

from infra.helm_render import Capabilities
from infra.invariants import RenderView, monitoring, pod_security, values_keys, workloads


def view(*objects: dict[str, Any], releases: tuple[dict[str, Any], ...] = ()) -> RenderView:
    resources = [{"type": f"kubernetes:test:{body['kind']}", "name": "x", "inputs": body} for body in objects]
    resources += [{"type": "kubernetes:helm.sh/v3:Release", "name": "r", "inputs": r} for r in releases]
    return RenderView("test", resources, "1.33")


def deployment(
    name: str = "app", namespace: str = "apps", *, container: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    main = container or {
        "name": "app",
        "image": "example/app:1.0",
        "ports": [{"name": "http", "containerPort": 8080}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [main], **spec}},
        },
    }


def service(target: object, selector: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "app", "namespace": "apps", "labels": labels},
        "spec": {
            "selector": selector or {"app": "app"},
            "ports": [{"name": "web", "port": 80, "targetPort": target}],
        },
    }


def test_service_ports() -> None:
    assert workloads.service_ports(view(deployment(), service("http"))) == []
    assert workloads.service_ports(view(deployment(), service(8080))) == []
    (wrong,) = workloads.service_ports(view(deployment(), service(9000)))
    assert "targets 9000, which Deployment apps/app does not declare" in wrong.problem
    (none,) = workloads.service_ports(view(deployment(), service("http", {"app": "other"})))
    assert "selects no pod" in none.problem


def test_probe_ports() -> None:
    probed = {
        "name": "app",
        "image": "example/app:1.0",
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
        "livenessProbe": {"tcpSocket": {"port": 9999}},
    }
    (finding,) = workloads.probe_ports(view(deployment(container=probed)))
    assert "livenessProbe tcpSocket targets port 9999" in finding.problem


def test_references() -> None:
    volumes = [
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "s", "secret": {"secretName": "opt", "optional": True}},
    ]
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "k"}}}]
    pod = deployment(container={"name": "app", "image": "example/app:1.0", "env": env}, volumes=volumes)
    problems = sorted(f.problem for f in workloads.references(view(pod)))
    assert problems == [
        "container app env KEY references Secret apps/app-secret, not in the render",
        "volume config references ConfigMap apps/app-config, not in the render",
    ]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret", "namespace": "apps"}}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": "apps"},
    }
    assert workloads.references(view(pod, secret, config_map)) == []


def _namespace(level: str) -> dict[str, Any]:
    labels = {"pod-security.kubernetes.io/enforce": level}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps", "labels": labels}}


def test_pod_security() -> None:
    hardened = {
        "name": "app",
        "image": "example/app:1.0",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    assert pod_security.pod_security(view(_namespace("restricted"), deployment(container=hardened))) == []
    plain = deployment(container={"name": "app", "image": "example/app:1.0"})
    restricted = pod_security.pod_security(view(_namespace("restricted"), plain))
    assert {f.problem for f in restricted} >= {
        "restricted: container app does not set allowPrivilegeEscalation: false",
        "restricted: container app does not drop ALL capabilities",
    }
    host = deployment(hostNetwork=True, volumes=[{"name": "h", "hostPath": {"path": "/"}}])
    baseline = {f.problem for f in pod_security.pod_security(view(_namespace("baseline"), host))}
    assert baseline == {"baseline: hostNetwork is true", "baseline: volume h is a hostPath"}
    assert pod_security.pod_security(view(_namespace("privileged"), host)) == []


def _prometheus(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "p", "namespace": "observability"},
        "spec": {"serviceMonitorSelector": {}, "serviceMonitorNamespaceSelector": {}, **spec},
    }


def _monitor(port: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"selector": {"matchLabels": {"metrics": "on"}}, "endpoints": [{"port": port}]},
    }


def test_monitors_select_targets() -> None:
    wired = view(_prometheus(), deployment(), service("http", metrics="on"), _monitor("web"))
    assert monitoring.monitors_select_targets(wired) == []
    (wrong_port,) = monitoring.monitors_select_targets(
        view(_prometheus(), deployment(), service("http", metrics="on"), _monitor("metrics"))
    )
    assert wrong_port.problem == "selects no endpoint of any pod"
    unselected = _prometheus(serviceMonitorSelector={"matchLabels": {"release": "kps"}})
    (ignored,) = monitoring.monitors_select_targets(
        view(unselected, deployment(), service("http", metrics="on"), _monitor("web"))
    )
    assert ignored.problem == "no Prometheus in the render selects it"


def test_queries_name_exported_metrics() -> None:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "jan", "namespace": "o", "labels": {"app.kubernetes.io/part-of": "jan"}},
        "spec": {
            "groups": [
                {"name": "g", "rules": [{"alert": "KongDown", "expr": "sum(kong_http_requests_total) == 0"}]}
            ]
        },
    }
    (finding,) = monitoring.queries_name_exported_metrics(view(rule))
    assert finding.problem == "queries kong_http_requests_total, which nothing in the stack exports"
    kong = deployment(
        "kong",
        container={"name": "proxy", "image": "kong:3.9.3", "ports": [{"name": "web", "containerPort": 8000}]},
    )
    scraped = view(_prometheus(), kong, service("web", {"app": "kong"}, metrics="on"), _monitor("web"), rule)
    assert monitoring.present_sources(scraped) == {"kong"}
    assert monitoring.queries_name_exported_metrics(scraped) == []


def test_a_union_needs_one_exported_side() -> None:
    exported = frozenset({"pg_up", "up"})
    assert monitoring.missing_metrics('max by (pod) (cnpg_collector_up{a="b"} or pg_up)', exported) == set()
    assert monitoring.missing_metrics("(cnpg_a or cnpg_b) / up", exported) == {"cnpg_a"}
    assert monitoring.missing_metrics("sum(rate(x_total[5m])) / sum(up)", exported) == {"x_total"}


def test_autoscalers_have_metrics() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "app", "namespace": "apps"},
        "spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu"}}]},
    }
    (finding,) = monitoring.autoscalers_have_metrics(view(hpa))
    assert "v1beta1.metrics.k8s.io" in finding.problem
    api = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": "v1beta1.metrics.k8s.io"},
    }
    assert monitoring.autoscalers_have_metrics(view(hpa, api)) == []
    addon = {
        "type": "aws:eks/addon:Addon",
        "name": "metrics-server",
        "inputs": {"addonName": "metrics-server"},
    }
    with_addon = view(hpa)
    with_addon.resources.append(addon)
    assert monitoring.autoscalers_have_metrics(with_addon) == []


def test_promtool_check_rules() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "bad", "namespace": "o"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "Broken", "expr": "sum(rate(x[5m]) >"}]}]},
    }
    (finding,) = monitoring.promtool_check_rules(view(bad))
    assert "parse error" in finding.problem


def test_values_keys_finds_unread_keys_and_pointless_nulls(tmp_path: Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text("port: 80\nextra: {a: 1}\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  port: {{ .Values.port | quote }}\n"
        "  extra: {{ .Values.extra | toJson | quote }}\n  random: {{ randAlphaNum 8 | quote }}\n"
    )
    release = {
        "name": "probe",
        "namespace": "n",
        "chart": str(chart),
        "version": "1.0.0",
        "repositoryOpts": {"repo": "https://charts.example"},
        "values": {"port": 81, "typo": {"prot": 1}, "extra": {"a": None}, "gone": None},
    }
    before = copy.deepcopy(release)
    with helm_python.Chart.load(str(chart)) as loaded:
        found = values_keys._unread_in_release(loaded, release, Capabilities("1.33"))
    assert sorted(f.problem for f in found) == [
        "gone deletes no chart default",
        "typo.prot is not read by the chart",
    ]
    assert release == before  # the probes left the program's values untouched
