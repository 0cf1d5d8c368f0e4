"""The generic app chart: what each app gets, the hardening every pod carries, and the switches."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from apps.gateway.routes import APPS, AppName
from tests.charts.rendering import by_kind, one, pod_specs, render

APP_NAMES = [name.value for name in AppName]


def _render(values: dict[str, Any] | None = None, release: str = "llm-api") -> list[dict[str, Any]]:
    return render("jan-app", values, release=release, namespace="jan")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("app", APP_NAMES)
def test_each_app_runs_the_one_image_with_its_own_command_and_port(app):
    objects = _render({"app": app}, release=app)
    spec = APPS[AppName(app)]
    deployment = one(objects, "Deployment")
    container = _container(deployment)
    assert deployment["metadata"]["name"] == app
    assert container["image"] == "jan-server:0.1.0"
    assert container["command"] == ["jan-server"]
    assert container["args"] == ["serve", app, "--port", str(spec.port)]
    assert container["ports"] == [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}]
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == spec.port
    jobs = by_kind(objects, "Job")
    assert len(jobs) == (1 if spec.schema else 0)
    if spec.schema:
        assert _container(jobs[0])["args"] == ["migrate", app]


def test_probes_hit_healthz_and_readyz():
    container = _container(one(_render(), "Deployment"))
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


@pytest.mark.parametrize("app", APP_NAMES)
def test_every_pod_is_hardened(app):
    for workload, pod in pod_specs(_render({"app": app}, release=app)):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] >= 10000, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert {"requests", "limits"} <= set(container["resources"]), where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], where


def test_defaults_spread_pods_and_bound_disruptions():
    objects = _render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert one(objects, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert not by_kind(objects, "HorizontalPodAutoscaler")
    assert not by_kind(objects, "ServiceMonitor")


def test_autoscaling_replaces_the_fixed_replica_count():
    objects = _render({"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9}})
    assert "replicas" not in one(objects, "Deployment")["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm-api"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]


def test_configuration_goes_to_a_configmap_and_secrets_stay_references():
    objects = _render(
        {
            "env": {"AUTH__ISSUER": "https://id.example/realms/jan", "DB_POOL_SIZE": 20},
            "secretEnv": {"DATABASE_URL": {"secretName": "llm-api-db", "key": "uri"}},
            "envFromSecrets": ["llm-api-client"],
        }
    )
    config = one(objects, "ConfigMap")["data"]
    assert config == {
        "AUTH__ISSUER": "https://id.example/realms/jan",
        "DB_POOL_SIZE": "20",
        "VERSION": "0.1.0",
    }
    container = _container(one(objects, "Deployment"))
    assert container["envFrom"] == [
        {"configMapRef": {"name": "llm-api"}},
        {"secretRef": {"name": "llm-api-client"}},
    ]
    secret_ref = {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "llm-api-db", "key": "uri"}}}
    assert container["env"] == [secret_ref]
    # The hook Job runs before the ConfigMap exists on a first install: configuration is inlined.
    job = _container(one(objects, "Job"))
    assert {"name": "AUTH__ISSUER", "value": "https://id.example/realms/jan"} in job["env"]
    assert secret_ref in job["env"]
    assert job["envFrom"] == [{"secretRef": {"name": "llm-api-client"}}]
    assert not by_kind(objects, "Secret")


def test_config_changes_roll_the_pods():
    def checksum(values: dict[str, Any]) -> str:
        annotations = one(_render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum({"env": {"LOG_LEVEL": "INFO"}}) != checksum({"env": {"LOG_LEVEL": "DEBUG"}})


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook_with_its_own_network_policy():
    objects = _render()
    job = one(objects, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod  # the release's ServiceAccount does not exist yet
    policies = by_kind(objects, "NetworkPolicy")
    hook_policy = next(p for p in policies if "helm.sh/hook" in p["metadata"].get("annotations", {}))
    assert int(hook_policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert (
        hook_policy["spec"]["podSelector"]["matchLabels"].items()
        <= job["spec"]["template"]["metadata"]["labels"].items()
    )
    # The Service never sends traffic to the migration pod.
    service_selector = one(objects, "Service")["spec"]["selector"]
    assert not service_selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert not by_kind(_render({"migrations": {"enabled": False}}), "Job")
    # Without network policies the hook adds none either (it would cut the Job off the database).
    unpoliced = _render({"networkPolicy": {"enabled": False}})
    assert one(unpoliced, "Job") and not by_kind(unpoliced, "NetworkPolicy")


def test_network_policy_denies_by_default_and_allows_what_values_name():
    policy = next(p for p in by_kind(_render(), "NetworkPolicy") if "annotations" not in p["metadata"])
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == []
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["egress"]] == [53]  # DNS only

    kong = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kong"}}}
    postgres = {"to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 5432}]}
    objects = _render({"networkPolicy": {"enabled": True, "ingressFrom": [kong], "egress": [postgres]}})
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if "annotations" not in p["metadata"])
    assert policy["spec"]["ingress"] == [{"from": [kong], "ports": [{"protocol": "TCP", "port": 8080}]}]
    assert policy["spec"]["egress"][1] == postgres


def test_service_account_is_annotatable_and_tokenless():
    arn = "arn:aws:iam::123456789012:role/media"
    objects = _render(
        {
            "app": "media-api",
            "serviceAccount": {
                "create": True,
                "automountToken": False,
                "annotations": {"eks.amazonaws.com/role-arn": arn},
            },
        },
        release="media-api",
    )
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    assert account["automountServiceAccountToken"] is False
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "media-api"


def test_service_monitor_only_when_asked_for():
    objects = _render(
        {
            "serviceMonitor": {
                "enabled": True,
                "path": "/metrics",
                "interval": "15s",
                "scrapeTimeout": "5s",
                "labels": {"release": "kps"},
            }
        }
    )
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"] == one(objects, "Service")["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "5s"}
    ]


def test_digest_pins_the_image():
    digest = "sha256:" + "ab" * 32
    objects = _render(
        {"image": {"repository": "registry.example/jan-server", "tag": "0.1.0", "digest": digest}}
    )
    for _, pod in pod_specs(objects):
        assert pod["containers"][0]["image"] == f"registry.example/jan-server@{digest}"


def test_release_names_without_the_app_are_prefixed():
    assert (
        one(_render({"app": "mcp-tools"}, release="prod"), "Deployment")["metadata"]["name"]
        == "prod-mcp-tools"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"tag": "latest"}},
        {"image": {"tag": ""}},
        {"image": {"tag": None}},
        {"image": {"tag": "stable"}},
        {"app": "vector-store"},
        {"replicaCount": "three"},
        {"securityContext": {"runAsUser": 0, "runAsGroup": 0}},
        {"service": {"type": "LoadBalancer"}},
        {"secretEnv": {"DATABASE_URL": {"secretName": "db"}}},
        {"env": {"bad-name": "x"}},
        {"resources": {"requests": {"cpu": "a lot", "memory": "128Mi"}}},
        {"replicas": 3},
        {"networkPolicy": {"enabled": True, "ingressFrom": [], "egress": [{"too": [{"podSelector": {}}]}]}},
        {"networkPolicy": {"enabled": True, "ingressFrom": [{"podSelectr": {}}], "egress": []}},
        {"tolerations": [{"key": "gpu", "effect": "NoScheduel"}]},
    ],
    ids=lambda v: str(v)[:60],
)
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm.HelmValuesError, match="schema"):
        _render(values)


def test_files_are_mounted_read_only_and_roll_the_pods_when_they_change():
    def deployment(content: str) -> dict[str, Any]:
        return one(_render({"files": {"providers.yml": content}}), "Deployment")

    objects = _render({"files": {"providers.yml": "providers: {}\n"}})
    files = one(objects, "ConfigMap", "llm-api-files")
    assert files["data"] == {"providers.yml": "providers: {}\n"}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "files", "configMap": {"name": "llm-api-files"}} in pod["volumes"]
    mount = {"name": "files", "mountPath": "/etc/jan-server", "readOnly": True}
    assert mount in pod["containers"][0]["volumeMounts"]
    first, second = (
        deployment(text)["spec"]["template"]["metadata"]["annotations"]["checksum/files"]
        for text in ("a: 1\n", "a: 2\n")
    )
    assert first != second
    assert not [item for item in _render() if item["metadata"]["name"].endswith("-files")]
