"""Part two of the platform program in the render: in-cluster data for dev, the four app releases and
their wiring, the image policy, ECR, and the stack outputs."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.gateway.routes import AppName
from infra import mock_engine, registry, render
from infra import release as release_layer
from infra.components import in_cluster_data
from infra.components.apps import FILES_DIR, PROVIDERS_FILE, PROVIDERS_FILE_ENV
from infra.config import REPO_ROOT, ConfigError, StackConfig, load_stack_file, parse, stack_file, stack_values
from infra.helm import declared_version
from infra.specs import identity, kong, llama_cpp, otel, vllm
from infra.versions import CHARTS, IMAGES
from tests.infra.conftest import STACKS, Rendered

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
APP_NAMES = [app.value for app in AppName]
REPO_VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def _config(stack: str) -> StackConfig:
    return load_stack_file(stack_file(stack))


def _releases(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {item["name"]: item["inputs"] for item in rendered.of_type(RELEASE)}


def _objects(rendered: Rendered, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object of a kind (also those inside our releases), by (namespace, name)."""
    found = {}
    for item in rendered.resources:
        body = item["inputs"]
        if item["type"].startswith("kubernetes:") and body.get("kind") == kind:
            meta = body["metadata"]
            found[(meta.get("namespace", ""), meta["name"])] = body
    return found


def _app_container(rendered: Rendered, app: str) -> dict[str, Any]:
    deployment = _objects(rendered, "Deployment")[("jan", app)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _app_env(rendered: Rendered, app: str) -> dict[str, str]:
    return dict(_objects(rendered, "ConfigMap")[("jan", app)]["data"])


def test_dev_runs_cloudnative_pg_and_seaweedfs_and_no_rds(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    releases = _releases(dev)
    operator, cluster, store = releases["cnpg"], releases["postgres"], releases["seaweedfs"]
    for inputs, pin in (
        (operator, CHARTS["cloudnative-pg"]),
        (cluster, CHARTS["cnpg-cluster"]),
        (store, CHARTS["seaweedfs"]),
    ):
        assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"]) == (
            pin.chart,
            pin.version,
            pin.repository,
        )
    assert operator["namespace"] == "cnpg-system"
    assert operator["values"]["image"] == {
        "repository": "ghcr.io/cloudnative-pg/cloudnative-pg",
        "tag": "1.30.0",
    }
    assert cluster["namespace"] == store["namespace"] == "data"
    spec = cluster["values"]["cluster"]
    assert spec["imageName"] == IMAGES["postgres"].ref
    assert spec["storage"] == {"size": "5Gi"}  # database.storageGib of the dev stack
    superuser = _objects(dev, "Secret")[("data", spec["superuserSecret"])]
    assert superuser["type"] == "kubernetes.io/basic-auth"
    assert set(superuser["stringData"]) == {"username", "password"}
    namespaces = _objects(dev, "Namespace")
    assert {("", "data"), ("", "cnpg-system")} <= set(namespaces)
    assert namespaces[("", "data")]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert not [item for item in dev.resources if item["type"].startswith("aws:")]


def test_seaweedfs_has_the_media_bucket_and_auth_from_a_generated_secret(
    rendered: dict[str, Rendered],
) -> None:
    dev = rendered["dev"]
    values = _releases(dev)["seaweedfs"]["values"]
    s3 = values["allInOne"]["s3"]
    assert values["allInOne"]["enabled"] is True
    assert values["s3"] == {"enabled": False}  # no standalone gateway (it would need a separate filer)
    assert s3["enableAuth"] is True
    assert s3["createBuckets"] == [{"name": "jan-dev-media", "anonymousRead": False}]
    assert values["image"]["tag"] == IMAGES["seaweedfs"].tag
    config_secret = _objects(dev, "Secret")[("data", s3["existingConfigSecret"])]
    assert set(config_secret["stringData"]) == {in_cluster_data.S3_CONFIG_KEY}
    keys = _objects(dev, "Secret")[("jan", in_cluster_data.MEDIA_S3_SECRET)]
    assert set(keys["stringData"]) == {"MEDIA_S3_ACCESS_KEY", "MEDIA_S3_SECRET_KEY"}


def test_the_s3_identity_may_use_the_media_bucket_only() -> None:
    document = json.loads(in_cluster_data.s3_identities("media-api", "jan-dev-media", "AK", "SK"))
    (identity_,) = document["identities"]
    assert identity_["name"] == "media-api"
    assert identity_["credentials"] == [{"accessKey": "AK", "secretKey": "SK"}]
    assert all(action.endswith(":jan-dev-media") for action in identity_["actions"])


@pytest.mark.parametrize("stack", STACKS)
def test_every_app_has_a_dsn_secret_from_the_stacks_database(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    out = rendered[stack]
    secrets = _objects(out, "Secret")
    (bootstrap,) = [
        job for job in out.of_type("kubernetes:batch/v1:Job") if job["name"].endswith("-bootstrap")
    ]
    assert bootstrap["parent"].startswith(
        "jan:platform:CloudNativePg" if stack == "dev" else "jan:platform:RdsDatabase"
    )
    for app in APP_NAMES:
        assert set(secrets[("jan", f"{app}-database")]["stringData"]) == {"DATABASE_URL"}
    releases = _releases(out)
    assert ("postgres" in releases) is (stack == "dev")
    assert bool(out.of_type("aws:rds/instance:Instance")) is (stack != "dev")


@pytest.mark.parametrize("stack", STACKS)
def test_each_app_release_carries_the_repo_version_and_the_configured_tag(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    out, config = rendered[stack], _config(stack)
    assert declared_version(REPO_ROOT / "charts" / "jan-app") == REPO_VERSION
    releases = _releases(out)
    if config.release.image_repository is not None:
        repository = config.release.image_repository
    else:  # the registry project's repository (infra.registry), in the stack's account and region
        repository = f"123456789012.dkr.ecr.{config.region}.amazonaws.com/jan-{stack}-server"
    for app in APP_NAMES:
        inputs = releases[app]
        assert (inputs["chart"], inputs["namespace"]) == ("charts/jan-app", "jan")
        assert inputs["values"]["image"] == {"repository": repository, "tag": config.release.image_tag}
        container = _app_container(out, app)
        assert container["image"] == f"{repository}:{config.release.image_tag}"
        labels = _objects(out, "Deployment")[("jan", app)]["metadata"]["labels"]
        assert labels["helm.sh/chart"] == f"jan-app-{REPO_VERSION}"
        assert labels["app.kubernetes.io/version"] == config.release.image_tag


@pytest.mark.parametrize("stack", STACKS)
def test_auth_settings_equal_the_identity_spec(stack: str, rendered: dict[str, Rendered]) -> None:
    out, config = rendered[stack], _config(stack)
    inputs = identity.IdentityInputs(public_url=config.identity_url)
    expected = identity.app_auth_env(inputs)
    assert expected["AUTH__ISSUER"] == f"{config.identity_url}/realms/jan"
    for app in APP_NAMES:
        env = _app_env(out, app)
        assert {key: env[key] for key in expected} == expected
        assert (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]
            == otel.app_otel_env(otel.ObservabilityInputs())["OTEL_EXPORTER_OTLP_ENDPOINT"]
        )
        assert env["AUTH__API_KEY_VALIDATION_URL"].startswith(
            kong.app_url(AppName.LLM_API, kong.KongInputs(namespace="jan"))
        )
    llm_env = _app_env(out, "llm-api")
    for key, value in identity.llm_api_keycloak_env(inputs).items():
        assert llm_env[key] == value


def _secret_refs(container: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            yield ref["name"], ref["key"]
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            yield source["secretRef"]["name"], None


@pytest.mark.parametrize("stack", STACKS)
def test_every_secret_an_app_reads_exists_with_its_key(stack: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[stack]
    secrets = _objects(out, "Secret")
    for app in APP_NAMES:
        container = _app_container(out, app)
        refs = dict(_secret_refs(container))
        assert refs["jan-internal-token"] == "token"
        assert refs[f"{app}-database"] == "DATABASE_URL"
        for name, key in _secret_refs(container):
            assert ("jan", name) in secrets, f"{app} reads a Secret nobody creates: {name}"
            if key is not None:
                assert key in secrets[("jan", name)]["stringData"]


def test_media_api_uses_pod_identity_on_aws_and_keys_in_cluster(rendered: dict[str, Rendered]) -> None:
    prod, dev = rendered["prod"], rendered["dev"]
    (association,) = [
        found
        for found in prod.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if found["inputs"]["namespace"] == "jan"
    ]
    deployment = _objects(prod, "Deployment")[("jan", "media-api")]
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == association["inputs"]["serviceAccount"]
    )
    assert ("jan", "media-api") in _objects(prod, "ServiceAccount")
    prod_env = _app_env(prod, "media-api")
    assert "MEDIA_S3_ENDPOINT" not in prod_env
    assert prod_env["MEDIA_S3_REGION"] == "us-east-1"
    assert not [name for name, key in _secret_refs(_app_container(prod, "media-api")) if key is None]
    dev_env = _app_env(dev, "media-api")
    assert dev_env["MEDIA_S3_ENDPOINT"] == "http://seaweedfs-all-in-one.data.svc.cluster.local:8333"
    assert dev_env["MEDIA_S3_BUCKET"] == "jan-dev-media"
    assert dev_env["MEDIA_S3_USE_PATH_STYLE"] == "true"
    assert dev_env["MEDIA_S3_PUBLIC_ENDPOINT"] == "http://localhost:8333"
    assert dev_env["MEDIA_S3_CREATE_BUCKET"] == "true"
    assert "MEDIA_S3_CREATE_BUCKET" not in prod_env
    assert "8333:8333" in release_layer.urls(_config("dev"))["objectStorePortForward"]
    assert "MEDIA_S3_PUBLIC_ENDPOINT" not in prod_env
    assert ("media-api-s3", None) in set(_secret_refs(_app_container(dev, "media-api")))


def test_llm_api_reads_the_providers_file_and_its_keycloak_secret(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    files = _objects(dev, "ConfigMap")[("jan", "llm-api-files")]["data"][PROVIDERS_FILE]
    assert files == vllm.providers_file([llama_cpp.llama_cpp_provider(llama_cpp.CpuModelInputs())])
    (provider,) = yaml.safe_load(files)["providers"]
    assert provider["base_url"] == "http://llama-cpp.inference.svc.cluster.local:8080/v1"
    assert _app_env(dev, "llm-api")[PROVIDERS_FILE_ENV] == f"{FILES_DIR}/{PROVIDERS_FILE}"
    refs = dict(_secret_refs(_app_container(dev, "llm-api")))
    assert refs["keycloak-backend-client"] == "client-secret"
    assert refs["model-server-api-key"] == "api-key"
    assert refs["llm-api-provider-keys"] == "secret"
    media_api = kong.app_url(AppName.MEDIA_API, kong.KongInputs(namespace="jan"))
    assert _app_env(dev, "llm-api")["MEDIA_RESOLVE_URL"] == f"{media_api}/v1/media/resolve"
    container = _app_container(dev, "llm-api")
    env = {entry["name"]: entry for entry in container["env"]}
    assert env[identity.BACKEND_SECRET_ENV]["valueFrom"]["secretKeyRef"]["name"] == "keycloak-backend-client"
    assert env["MODEL_SERVER_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "model-server-api-key"


@pytest.mark.parametrize("stack", STACKS)
def test_apps_find_each_other_where_kong_routes(stack: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[stack]
    inputs = kong.KongInputs(namespace="jan")
    response = _app_env(out, "response-api")
    assert response["LLM_API_URL"] == kong.app_url(AppName.LLM_API, inputs)
    assert response["MCP_TOOLS_URL"] == kong.app_url(AppName.MCP_TOOLS, inputs)  # the app adds /v1/mcp
    tools = _app_env(out, "mcp-tools")
    services = _objects(out, "Service")
    # The Services the search component deployed, not names guessed here.
    for key, (namespace, name) in (
        ("SEARXNG_URL", ("search", "searxng")),
        ("SANDBOX_FUSION_URL", ("sandbox", "sandboxfusion")),
    ):
        port = services[(namespace, name)]["spec"]["ports"][0]["port"]
        assert tools[key] == f"http://{name}.{namespace}.svc.cluster.local:{port}"
    assert tools["MEDIA_API_URL"] == kong.app_url(AppName.MEDIA_API, inputs)
    for app in APP_NAMES:
        assert ("jan", app) in services


def test_aws_stacks_create_an_immutable_scanned_image_repository(rendered: dict[str, Rendered]) -> None:
    """The registry project creates it; the platform itself never does (tests/infra/test_bringup.py)."""
    for stack in ("staging", "prod"):
        config = _config(stack)
        records = mock_engine.run(
            registry.main, stack=stack, config=stack_values(stack_file(stack)), region=config.region or ""
        )
        (ecr,) = [record for record in records if record.type == "aws:ecr/repository:Repository"]
        inputs = ecr.inputs
        assert inputs["name"] == f"jan-{stack}-server"
        assert inputs["imageTagMutability"] == "IMMUTABLE"
        assert inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert inputs["forceDelete"] is (stack != "prod")
        assert not rendered[stack].of_type("aws:ecr/repository:Repository")
    assert not rendered["dev"].of_type("aws:ecr/repository:Repository")


def _release(**changes: Any) -> dict[str, Any]:
    values = stack_values(stack_file("prod"))
    values["jan-server:release"] = changes
    return values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (_release(imageTag="latest"), "jan-server:release.imageTag: 'latest' is a floating tag"),
        (_release(imageTag="Stable"), "jan-server:release.imageTag: 'Stable' is a floating tag"),
        (_release(), "jan-server:release.imageTag: Field required"),
        (
            _release(imageTag="0.1.0", imageRepository="ghcr.io/janhq/jan-server"),
            "jan-server:release.imageRepository: the program's ECR repository is used",
        ),
    ],
)
def test_release_config_refuses_floating_tags_and_stray_repositories(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as failure:
        parse(values)
    assert message in str(failure.value)


def test_off_aws_the_stack_names_its_repository_without_a_tag() -> None:
    values = stack_values(stack_file("dev"))
    values["jan-server:release"] = {"imageTag": "0.1.0"}
    with pytest.raises(ConfigError, match=r"release\.imageRepository: is required unless"):
        parse(values)
    values["jan-server:release"] = {"imageTag": "0.1.0", "imageRepository": "ghcr.io/janhq/jan-server:0.1.0"}
    with pytest.raises(ConfigError, match="without a tag"):
        parse(values)


def test_cnpg_refuses_an_engine_version_the_pinned_image_does_not_run(tmp_path: Path) -> None:
    values = stack_values(stack_file("dev"))
    values["jan-server:database"] = {"mode": "in-cluster", "engineVersion": "16", "storageGib": 5}
    with pytest.raises(Exception, match="does not match the pinned"):
        render.render("dev", values, parse(values))


@pytest.mark.parametrize("stack", STACKS)
def test_outputs_say_where_credentials_are_never_what_they_are(stack: str) -> None:
    config = _config(stack)
    urls = release_layer.urls(config)
    assert urls["keycloakUrl"] == config.identity_url
    assert urls["gatewayUrl"] == (config.gateway_origin if config.on_aws else "http://localhost:8000")
    assert urls["grafanaPortForward"].startswith("kubectl -n observability port-forward")
    commands = release_layer.admin_credentials()
    assert set(commands) == {"keycloak", "grafana", "database"}
    for command in commands.values():
        assert command.startswith("kubectl -n ") and " get secret " in command
    assert "jan-db-admin" in commands["database"]


def test_generated_secrets_of_the_data_and_app_layers_never_reach_the_render(
    rendered: dict[str, Rendered],
) -> None:
    dev = rendered["dev"]
    names = [
        "jan-dev-apps-jan-internal-token",
        "jan-dev-apps-llm-api-provider-keys",
        "jan-dev-identity-backend-client-secret",
        "jan-dev-inference-api-key",
        "jan-dev-postgres-superuser",
        "jan-dev-postgres-keycloak",
        "jan-dev-objects-access-key",
        "jan-dev-objects-secret-key",
    ]
    generated = {
        name: mock_engine._fake_outputs("random:index/randomPassword:RandomPassword", name, {}, "")["result"]
        for name in names
    }
    assert {item["name"] for item in dev.of_type("random:index/randomPassword:RandomPassword")} >= set(names)
    texts = [(dev.out / "resources.json").read_text()]
    texts += [path.read_text() for path in (dev.out / "manifests").rglob("*.yaml")]
    for name, value in generated.items():
        assert not [text for text in texts if value in text], name


@pytest.mark.parametrize("stack", STACKS)
def test_aws_stacks_autoscale_every_app_and_dev_runs_one_replica(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    out = rendered[stack]
    autoscalers = _objects(out, "HorizontalPodAutoscaler")
    budgets = _objects(out, "PodDisruptionBudget")
    for app in APP_NAMES:
        deployment = _objects(out, "Deployment")[("jan", app)]
        if stack == "dev":
            assert deployment["spec"]["replicas"] == 1
            assert ("jan", app) not in autoscalers and ("jan", app) not in budgets
        else:
            spec = autoscalers[("jan", app)]["spec"]
            assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
            # Scale out at 600m per pod (~60% of a process's one-core knee), whatever the request.
            (cpu,) = [metric["resource"] for metric in spec["metrics"]]
            assert cpu == {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "600m"}}
            assert "replicas" not in deployment["spec"]
            assert ("jan", app) in budgets
