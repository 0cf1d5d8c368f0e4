"""`infra.helm_render`: the one wrapper over helm-python-sdk's native render, with capabilities."""

from __future__ import annotations

from pathlib import Path

import helm_python
import pytest

from infra.helm_render import Capabilities, crd_api_versions, render_chart, template

_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object}
"""


def _chart(root: Path) -> Path:
    chart = root / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "crds").mkdir()
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: probe\nversion: 1.0.0\n"
        "dependencies:\n  - name: sub\n    version: 0.1.0\n    condition: sub.enabled\n"
    )
    (chart / "values.yaml").write_text("keep: kept\ndropme: {a: 1}\nsub: {enabled: false}\n")
    (chart / "crds" / "widgets.yaml").write_text(_CRD)
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        "data:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
        "  keep: {{ .Values.keep | quote }}\n  dropped: {{ empty .Values.dropme | quote }}\n"
        '{{- if .Capabilities.APIVersions.Has "example.com/v1/Widget" }}\n---\n'
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gated\n{{- end }}\n"
    )
    (chart / "templates" / "test.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: t\n  annotations: {helm.sh/hook: test}\n"
        "spec: {containers: [{name: t, image: x:1.0}]}\n"
    )
    sub = chart / "charts" / "sub"
    (sub / "crds").mkdir(parents=True)
    (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (sub / "crds" / "gadgets.yaml").write_text(_CRD.replace("widgets", "gadgets").replace("Widget", "Gadget"))
    return chart


def test_template_passes_kube_version_and_api_versions(tmp_path: Path) -> None:
    with helm_python.Chart.load(str(_chart(tmp_path))) as chart:
        plain = template(chart, {}, name="r", namespace="n", capabilities=Capabilities("1.31"))
        gated = template(
            chart,
            {},
            name="r",
            namespace="n",
            capabilities=Capabilities("v1.33.0", frozenset({"example.com/v1", "example.com/v1/Widget"})),
        )
    assert 'kube: "v1.31.0"' in plain["probe/templates/cm.yaml"]
    assert "kind: Widget" not in plain["probe/templates/cm.yaml"]
    assert 'kube: "v1.33.0"' in gated["probe/templates/cm.yaml"]
    assert "kind: Widget" in gated["probe/templates/cm.yaml"]


def test_render_chart_ships_crds_keeps_nulls_and_drops_test_hooks(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    objects = render_chart(chart, {"dropme": None}, "r", "ns", Capabilities("1.33"))
    kinds = [(body["kind"], body["metadata"]["name"]) for body in objects]
    # The chart's own CRDs first; the disabled subchart's are not installed; the test hook is not.
    assert kinds == [("CustomResourceDefinition", "widgets.example.com"), ("ConfigMap", "r")]
    config_map = objects[1]
    assert config_map["metadata"]["namespace"] == "ns"
    assert config_map["data"] == {"kube": "v1.33.0", "keep": "kept", "dropped": "true"}  # null deleted it
    with_sub = render_chart(chart, {"sub": {"enabled": True}}, "r", "ns", Capabilities("1.33"))
    assert sorted(b["metadata"]["name"] for b in with_sub if b["kind"] == "CustomResourceDefinition") == [
        "gadgets.example.com",
        "widgets.example.com",
    ]


def test_capabilities_grow_with_the_crds_of_a_render() -> None:
    crd = {
        "kind": "CustomResourceDefinition",
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}],
        },
    }
    assert crd_api_versions([crd, {"kind": "ConfigMap"}]) == {"example.com/v1", "example.com/v1/Widget"}
    assert Capabilities("1.33").with_crds([crd]).api_versions == {"example.com/v1", "example.com/v1/Widget"}


def test_template_errors_surface(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    (chart / "templates" / "bad.yaml").write_text('{{ fail "no" }}\n')
    with helm_python.Chart.load(str(chart)) as loaded, pytest.raises(helm_python.HelmError, match="no"):
        template(loaded, {}, name="r", namespace="n", capabilities=None)
