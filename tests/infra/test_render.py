"""`jan-server render`: every stack renders, deterministically; validation and `--diff` catch plants."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from apps.cli import main as cli
from infra import helm, mock_engine, program, render
from infra.config import stack_file
from infra.foundation import Platform
from infra.helm import ChartSource
from infra.versions import NVIDIA_DEVICE_PLUGIN
from tests.infra.conftest import STACKS, Rendered, render_stack, require_chart_cache
from tests.infra.services_helpers import manifest, manifest_file

_RELEASE = "kubernetes:helm.sh/v3:Release"


def _same_tree(left: Path, right: Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    return (
        not mismatch and not errors and all(_same_tree(left / d, right / d) for d in comparison.common_dirs)
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_renders_deterministically(
    stack: str, rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    first = rendered[stack]
    assert first.exit_code == 0
    assert manifest_file(first, None, "Namespace", "jan").is_file()
    again = render_stack(stack, tmp_path / stack)
    assert again.exit_code == 0
    assert _same_tree(first.out, again.out)


def test_render_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_chart_cache()
    assert cli(["render", "--stack", "dev", "--out", str(tmp_path)]) == 0
    assert "all valid for Kubernetes 1.33" in capsys.readouterr().out


def test_secrets_never_reach_the_render(prod: Rendered) -> None:
    text = (prod.out / "resources.json").read_text()
    generated = mock_engine._fake_outputs(
        "random:index/randomPassword:RandomPassword", "jan-prod-database-admin", {}, ""
    )
    assert generated["result"] not in text
    for path in (prod.out / "manifests").rglob("*.yaml"):
        assert generated["result"] not in path.read_text()


def test_strict_validation_catches_a_planted_invalid_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_chart_cache()
    build = program.build

    def with_a_bad_deployment(config: Any) -> Platform:
        platform = build(config)
        spec: Any = {
            "replicaz": 2,  # the typo strict validation must catch
            "selector": {"matchLabels": {"app": "planted"}},
            "template": {
                "metadata": {"labels": {"app": "planted"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]},
            },
        }
        metadata: Any = {"name": "planted", "namespace": "jan"}
        k8s.apps.v1.Deployment(
            "planted",
            metadata=metadata,
            spec=spec,
            opts=pulumi.ResourceOptions(provider=platform.cluster.provider),
        )
        return platform

    monkeypatch.setattr(program, "build", with_a_bad_deployment)
    assert render.main("dev", str(tmp_path)) == 1
    errors = capsys.readouterr().err
    assert "invalid manifest jan/deployment-planted.yaml" in errors
    assert "'replicaz' was unexpected" in errors


def test_diff_reports_a_planted_change(
    prod: Rendered, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(stack_file("prod").read_text())
    pools = document["config"]["jan-server:gpuPools"]
    pools[0]["scaling"]["maxSize"] = 9
    pools.append(
        {
            "name": "l40sx4",
            "instanceTypes": ["g6e.12xlarge"],
            "scaling": {"minSize": 0, "desiredSize": 0, "maxSize": 2},
        }
    )
    changed = tmp_path / "Pulumi.prod.yaml"
    changed.write_text(yaml.safe_dump(document))
    capsys.readouterr()
    assert render.main(str(changed), str(tmp_path / "new"), str(prod.out)) == 0
    report = capsys.readouterr().out
    assert "5 to add, 1 to change, 0 to remove." in report  # the pool and its 4 autoscaler tags
    assert "- **+** `aws:eks/nodeGroup:NodeGroup` jan-prod-gpu-l40sx4" in report
    assert "- **~** `aws:eks/nodeGroup:NodeGroup` jan-prod-gpu-l4" in report
    assert "  - `scalingConfig.maxSize`: `6` → `9`" in report


def test_diff_of_identical_renders_says_so(prod: Rendered, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.render_diff import diff_renders

    assert diff_renders(prod.out, prod.out, "prod").endswith("No changes.")
    capsys.readouterr()


def test_bad_stack_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config:\n  jan-server:environment: qa\n")
    assert render.main(str(bad), str(tmp_path / "out")) == 2
    assert "jan-server:environment" in capsys.readouterr().err
    assert render.main("nonexistent", str(tmp_path / "out")) == 2


def test_upstream_charts_are_pinned_releases_from_their_repositories() -> None:
    def with_a_release() -> None:
        provider = k8s.Provider("k8s", context="kind")
        helm.upstream_release(
            "gpu-plugin",
            NVIDIA_DEVICE_PLUGIN,
            namespace="gpu",
            values={"gfd": {"enabled": False}},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    records = mock_engine.run(with_a_release, stack="unit", config={}, region="eu-west-1")
    (release,) = [r for r in records if r.type == "kubernetes:helm.sh/v3:Release"]
    assert release.inputs["chart"] == NVIDIA_DEVICE_PLUGIN.name
    assert release.inputs["version"] == NVIDIA_DEVICE_PLUGIN.version
    assert release.inputs["repositoryOpts"] == {"repo": NVIDIA_DEVICE_PLUGIN.repository}
    require_chart_cache()
    # The render expands it from the chart cache at the pinned version, with the values it was given.
    expanded = render.expand_releases(records, "1.33")
    daemonsets = {r.name: r for r in expanded if r.type == "kubernetes:apps/v1:DaemonSet"}
    assert set(daemonsets) == {
        "gpu/gpu-plugin-nvidia-device-plugin",
        "gpu/gpu-plugin-nvidia-device-plugin-mps-control-daemon",
    }
    assert {r.parent for r in daemonsets.values()} == {"kubernetes:helm.sh/v3:Release::gpu-plugin"}
    assert not [r for r in expanded if "gpu-feature-discovery" in r.name]  # gfd.enabled: False applied


def test_our_charts_deploy_through_the_same_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart_dir = tmp_path / "jan-app"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: jan-app\nversion: 0.1.0\n")
    (chart_dir / "values.yaml").write_text("port: 8080\n")
    (chart_dir / "templates" / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n"
        "spec:\n  ports:\n    - port: {{ .Values.port }}\n"
    )
    monkeypatch.setattr(helm, "OUR_CHARTS_DIR", tmp_path)
    source = ChartSource.ours("jan-app")
    assert source.version == "0.1.0"

    def with_our_chart() -> None:
        provider = k8s.Provider("k8s", context="kind")
        helm.chart(
            "llm-api",
            source,
            namespace="jan",
            values={"port": 8285},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    records = mock_engine.run(with_our_chart, stack="unit", config={}, region="eu-west-1")
    (service,) = [r for r in records if r.type == "kubernetes:core/v1:Service"]
    assert service.parent == "kubernetes:helm.sh/v3:Chart::llm-api"
    assert service.inputs["metadata"] == {"name": "llm-api", "namespace": "jan"}
    assert service.inputs["spec"]["ports"] == [{"port": 8285}]


def test_releases_of_our_charts_are_expanded_into_the_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart_dir = tmp_path / "hooked"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: hooked\nversion: 0.1.0\n")
    (chart_dir / "templates" / "daemonset.yaml").write_text(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {{ .Release.Name }}\n"
        "  namespace: {{ .Release.Namespace }}\nspec:\n  selector:\n    matchLabels: {app: x}\n"
        "  template:\n    metadata:\n      labels: {app: x}\n    spec:\n      containers:\n"
        "        - name: x\n          image: example/x:1.0.0\n"
    )
    monkeypatch.setattr(helm, "OUR_CHARTS_DIR", tmp_path)

    def with_a_release() -> None:
        provider = k8s.Provider("k8s", context="kind")
        helm.release(
            "hooked",
            ChartSource.ours("hooked"),
            namespace="gpu",
            values={},
            opts=pulumi.ResourceOptions(provider=provider),
        )

    records = mock_engine.run(with_a_release, stack="unit", config={}, region="eu-west-1")
    expanded = render.expand_releases(records, "1.33")
    daemonset = next(r for r in expanded if r.type == "kubernetes:apps/v1:DaemonSet")
    assert daemonset.parent == "kubernetes:helm.sh/v3:Release::hooked"
    assert daemonset.inputs["metadata"]["namespace"] == "gpu"


def test_upstream_objects_are_rendered_validated_and_written(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    kong = manifest(prod, "gateway", "Deployment", "kong-kong")
    assert kong["spec"]["replicas"] == 3
    # CRDs the charts ship (crds/ directories and templates) are part of the render and validate CRs.
    crd = "CustomResourceDefinition"
    assert manifest_file(prod, None, crd, "servicemonitors.monitoring.coreos.com").is_file()
    assert manifest_file(prod, None, crd, "scaledobjects.keda.sh").is_file()
    # A chart gating an object on the cluster's API versions sees the CRDs of the render.
    assert manifest_file(prod, "gateway", "ServiceMonitor", "kong-kong").is_file()
    assert prod.exit_code == 0


def test_nulls_the_program_sends_reach_helm(rendered: dict[str, Rendered]) -> None:
    (collector,) = [r for r in rendered["prod"].of_type(_RELEASE) if r["name"] == "otel-collector"]
    config = collector["inputs"]["values"]["config"]
    assert config["receivers"]["jaeger"] is None and config["exporters"]["debug"] is None
    assert config["service"]["pipelines"]["logs"] is None
    # ... and Helm deleted those chart defaults: the collector's config has none of them.
    config_map = yaml.safe_load(
        manifest_file(rendered["prod"], "observability", "ConfigMap", "otel-collector").read_text()
    )
    relay = yaml.safe_load(config_map["data"]["relay"])
    assert not {"jaeger", "zipkin", "prometheus"} & set(relay["receivers"])
    assert "debug" not in relay["exporters"] and "logs" not in relay["service"]["pipelines"]


def test_mock_engine_keeps_nested_nulls() -> None:
    def with_nulls() -> None:
        provider = k8s.Provider("k8s", context="kind")
        k8s.helm.v3.Release(
            "r",
            k8s.helm.v3.ReleaseArgs(chart="c", values={"a": None, "b": {"c": None, "d": [1, None]}, "e": 1}),
            pulumi.ResourceOptions(provider=provider),
        )

    records = mock_engine.run(with_nulls, stack="unit", config={}, region="eu-west-1")
    (release,) = [r for r in records if r.type == _RELEASE]
    assert release.inputs["values"] == {"a": None, "b": {"c": None, "d": [1, None]}, "e": 1}


def test_diff_shows_upstream_objects_changing(
    prod: Rendered, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = yaml.safe_load(stack_file("prod").read_text())
    document["config"]["jan-server:gateway"]["replicas"] = 5
    changed = tmp_path / "Pulumi.prod.yaml"
    changed.write_text(yaml.safe_dump(document))
    capsys.readouterr()
    assert render.main(str(changed), str(tmp_path / "new"), str(prod.out)) == 0
    report = capsys.readouterr().out
    assert "- **~** `kubernetes:apps/v1:Deployment` gateway/kong-kong" in report
    assert "  - `spec.replicas`: `3` → `5`" in report


def test_a_named_stack_is_read_from_the_project_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "checkout"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: jan-server\nruntime: python\n")
    document = yaml.safe_load(stack_file("prod").read_text())
    document["config"]["jan-server:gateway"]["replicas"] = 7
    (project / "stacks" / "Pulumi.prod.yaml").write_text(yaml.safe_dump(document))
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")  # like `pulumi`, the nearest Pulumi.yaml upwards
    name, _, config = render.read_stack("prod")
    assert name == "prod"
    assert config.gateway.replicas == 7
    monkeypatch.chdir(tmp_path)
    assert render.main("prod", str(tmp_path / "out")) == 2
    assert "no Pulumi project (Pulumi.yaml)" in capsys.readouterr().err


def test_render_and_charts_help_describe_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["render", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--stack STACK a stack name (dev, staging, prod: its file in the Pulumi project" in text
    assert "--out OUT the directory to write resources.json and manifests/ into (default: render)" in text
    with pytest.raises(SystemExit):
        cli(["charts", "pull", "--help"])
    assert "JAN_CHART_CACHE" in capsys.readouterr().out


def test_a_missing_chart_cache_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JAN_CHART_CACHE", str(tmp_path / "empty"))
    assert render.main("dev", str(tmp_path / "out")) == 2
    assert "is not in the chart cache" in capsys.readouterr().err
