"""Every chart lints clean, renders with its defaults and each realistic values file, and every object
passes strict Kubernetes schema validation; nothing floats (no `latest`, no untagged image)."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.charts.rendering import CASES, CHART_NAMES, CHARTS, K8S_VERSIONS, ROOT, ChartCase, render_case

# Kinds whose schema lives in a CRD rather than in Kubernetes itself, checked against our own schema.
_CRD_SCHEMAS = {
    "monitoring.coreos.com/v1/ServiceMonitor": Path(__file__).parent / "servicemonitor.schema.json"
}
# jsonschema comes with kubernetes-validate and has no type stubs; loaded as a plain module.
jsonschema = importlib.import_module("jsonschema")
_FLOATING_TAGS = {"latest", "stable", "main", "master", "edge", "dev", ""}


def _images(obj: Any) -> list[str]:
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_images(value))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(_images(item))
    return found


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.id)
def rendered(request: pytest.FixtureRequest) -> tuple[ChartCase, list[dict[str, Any]]]:
    case: ChartCase = request.param
    return case, render_case(case)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_chart_lints_clean(case, k8s_version):
    """helm lint --strict with the case's values: warnings count as errors; "icon is recommended" is info."""
    chart = str(CHARTS / case.chart)
    result = helm.lint(
        chart, case.values(), strict=True, namespace=case.namespace, kube_version=f"v{k8s_version}"
    )
    assert not result["errors"], result
    assert all(message["severity"] <= 1 for message in result["messages"]), result["messages"]


def test_every_chart_has_realistic_values():
    for chart in CHART_NAMES:
        assert list((CHARTS / chart / "ci").glob("*-values.yaml")), chart
    apps = {case.release for case in CASES if case.chart == "jan-app" and case.values_file}
    assert apps == {"llm-api", "response-api", "media-api", "mcp-tools"}


def test_every_object_passes_strict_schema_validation(rendered):
    case, objects = rendered
    assert objects, case.id
    for obj in objects:
        api_kind = f"{obj['apiVersion']}/{obj['kind']}"
        if api_kind in _CRD_SCHEMAS:
            schema = json.loads(_CRD_SCHEMAS[api_kind].read_text())
            jsonschema.validate(obj, schema)
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_every_object_is_namespaced_to_the_release(rendered):
    case, objects = rendered
    for obj in objects:
        assert obj["metadata"]["namespace"] == case.namespace, obj["metadata"]["name"]


def test_no_floating_image_tags(rendered):
    case, objects = rendered
    images = _images(objects)
    assert images, case.id
    for image in images:
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag not in _FLOATING_TAGS, image
        # A bare major or major.minor (`8`, `8-alpine`, `8.1`) moves under our feet; pin the patch.
        assert not re.fullmatch(r"v?\d+(\.\d+)?(-[a-z0-9]+)?", tag), f"{image} floats"


def test_chart_versions_are_the_repository_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for chart in CHART_NAMES:
        meta = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())
        assert meta["version"] == version, chart
    app_chart = yaml.safe_load((CHARTS / "jan-app" / "Chart.yaml").read_text())
    assert app_chart["appVersion"] == version
    assert yaml.safe_load((CHARTS / "jan-app" / "values.yaml").read_text())["image"]["tag"] == version


def test_schemas_are_strict():
    """Every object in every values schema names its keys: a typo in a values file fails the render."""

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False or path.endswith("settings"), path
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    for chart in CHART_NAMES:
        walk(json.loads((CHARTS / chart / "values.schema.json").read_text()), chart)


_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def test_every_pod_meets_pod_security_restricted(rendered):
    """The namespaces run with Pod Security Admission `restricted`; a pod that breaks it never starts."""
    case, objects = rendered
    for obj in objects:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        pod = obj["spec"]["template"]["spec"]
        where = f"{case.id} {obj['kind']}/{obj['metadata']['name']}"
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC", "hostUsers")), where
        for volume in pod.get("volumes", []):
            assert set(volume) - {"name"} <= _RESTRICTED_VOLUMES, where
        pod_context = pod.get("securityContext", {})
        assert pod_context.get("runAsUser", 1) != 0, where
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("privileged") is not True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in context.get("capabilities", {}).get("drop", []), where
            assert set(context.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, where
            assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True, where
            assert context.get("runAsUser", 1) != 0, where
            seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
            assert not any(port.get("hostPort") for port in container.get("ports", [])), where
