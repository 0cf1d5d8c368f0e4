"""The services and the app releases together: one owner per object, one source of truth per value."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
import yaml

from apps.gateway.routes import AppName
from infra import release as release_layer
from infra.config import load_stack_file, stack_file
from infra.specs.network_policies import NetworkInputs
from tests.infra.conftest import STACKS, Rendered
from tests.infra.services_helpers import has_manifest, manifest, manifests, release, values

APPS = [app.value for app in AppName]
JOB = "kubernetes:batch/v1:Job"


def _kubernetes_objects(rendered: Rendered) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every object, those inside Helm releases included."""
    found = []
    for item in rendered.resources:
        body = item["inputs"]
        if item["type"].startswith("kubernetes:") and "kind" in body and "metadata" in body:
            meta = body["metadata"]
            found.append((body["kind"], meta.get("namespace", ""), meta["name"]))
    return found


def _container_env(rendered: Rendered, app: str) -> dict[str, dict[str, Any]]:
    deployment = manifest(rendered, "jan", "Deployment", app)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry for entry in container["env"]}


def _bootstrap_job(rendered: Rendered) -> dict[str, Any]:
    (job,) = [item["inputs"] for item in rendered.of_type(JOB) if item["name"].endswith("-bootstrap")]
    return dict(job)


@pytest.mark.parametrize("stack", STACKS)
def test_every_object_is_rendered_once(stack: str, rendered: dict[str, Rendered]) -> None:
    objects = _kubernetes_objects(rendered[stack])
    assert [key for key, count in Counter(objects).items() if count > 1] == []
    # The Secrets platform-apps used to stand in for are the identity and inference components' own.
    owners = {
        item["inputs"]["metadata"]["name"]: item["parent"]
        for item in rendered[stack].of_type("kubernetes:core/v1:Secret")
        if item["inputs"]["metadata"].get("namespace") == "jan"
    }
    assert owners["keycloak-backend-client"].startswith("jan:platform:Identity::")
    assert owners["model-server-api-key"].startswith("jan:platform:Inference::")


@pytest.mark.parametrize("stack", STACKS)
def test_apps_take_issuer_audience_and_jwks_from_the_keycloak_that_was_deployed(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    out = rendered[stack]
    keycloak = values(out, "keycloak")
    env = {entry["name"]: entry.get("value") for entry in yaml.safe_load(keycloak["extraEnv"])}
    (realm_map,) = manifest(out, "identity", "ConfigMap", "keycloak-realm")["data"].values()
    realm = yaml.safe_load(realm_map)["realm"]
    issuer = f"{env['KC_HOSTNAME']}/realms/{realm}"
    config = load_stack_file(stack_file(stack))
    assert issuer == f"{config.identity_url}/realms/jan"
    if stack == "dev":
        assert issuer == "http://auth.jan.localtest.me:8180/realms/jan"
    for app in APPS:
        assert manifest(out, "jan", "ConfigMap", app)["data"]["AUTH__ISSUER"] == issuer


@pytest.mark.parametrize("stack", STACKS)
def test_one_env_mechanism_inline_from_the_specs(stack: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[stack]
    config_maps = {name for kind, namespace, name in _kubernetes_objects(out) if kind == "ConfigMap"}
    assert not {"platform-env", "llm-api-keycloak", "llm-api-providers"} & config_maps
    env = _container_env(out, "llm-api")
    assert env["KEYCLOAK__BACKEND_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "keycloak-backend-client",
        "key": "client-secret",
    }
    assert env["MODEL_SERVER_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "model-server-api-key",
        "key": "api-key",
    }


@pytest.mark.parametrize("stack", STACKS)
def test_llm_api_gets_the_inference_components_providers(stack: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[stack]
    text = manifest(out, "jan", "ConfigMap", "llm-api-files")["data"]["providers.yml"]
    urls = [entry["base_url"] for entry in yaml.safe_load(text)["providers"]]
    services = {
        f"http://{item['metadata']['name']}.inference.svc.cluster.local:{item['spec']['ports'][0]['port']}/v1"
        for item in manifests(out, "inference", "Service")
    }
    assert urls and set(urls) <= services
    if stack == "dev":
        assert urls == ["http://llama-cpp.inference.svc.cluster.local:8080/v1"]
    else:
        models = load_stack_file(stack_file(stack)).inference.models
        assert len(urls) == len(models) and all("vllm-" in url for url in urls)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_keycloak_gets_its_database_from_the_bootstrap_job(stack: str, rendered: dict[str, Rendered]) -> None:
    out = rendered[stack]
    secret = manifest(out, "identity", "Secret", "keycloak-database")
    assert set(secret["stringData"]) == {"host", "port", "database", "username", "password"}
    keycloak_env = yaml.safe_load(values(out, "keycloak")["extraEnv"])
    refs = {entry["valueFrom"]["secretKeyRef"]["name"] for entry in keycloak_env if "valueFrom" in entry}
    assert "keycloak-database" in refs
    (container,) = _bootstrap_job(out)["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    roles = env["ROLES"].split()
    assert "keycloak" in roles
    role_passwords = manifest(out, "jan", "Secret", "jan-db-roles")["stringData"]
    assert set(role_passwords) == set(roles) | set((env.get("MONITORING_ROLES") or "").split())
    # No DSN Secret for Keycloak in the apps namespace: its login lives only where Keycloak runs.
    assert not has_manifest(out, "jan", "Secret", "keycloak-database")


def test_one_owner_per_namespace_and_cnpg_deploys_into_securitys(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    namespaces = dev.of_type("kubernetes:core/v1:Namespace")
    names = Counter(item["inputs"]["metadata"]["name"] for item in namespaces)
    assert names["data"] == names["cnpg-system"] == 1
    for item in namespaces:
        if item["inputs"]["metadata"]["name"] in ("data", "cnpg-system"):
            assert item["parent"].startswith("jan:platform:Security::")
    assert release(dev, "cnpg")["namespace"] == "cnpg-system"
    assert release(dev, "postgres")["namespace"] == release(dev, "seaweedfs")["namespace"] == "data"
    prod_names = {
        item["inputs"]["metadata"]["name"]
        for item in rendered["prod"].of_type("kubernetes:core/v1:Namespace")
    }
    assert not {"data", "cnpg-system"} & prod_names


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_bootstrap_job_may_reach_postgres_under_default_deny(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    out = rendered[stack]
    job = _bootstrap_job(out)
    assert job["metadata"]["namespace"] == "jan"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "database"
    policies = manifests(out, "jan", "NetworkPolicy")
    assert any(policy["metadata"]["name"] == "default-deny" for policy in policies)
    egress = [
        rule
        for policy in policies
        if "Egress" in policy["spec"]["policyTypes"] and _selects(policy["spec"]["podSelector"], labels)
        for rule in policy["spec"].get("egress", [])
    ]
    assert any({"protocol": "TCP", "port": 5432} in rule.get("ports", []) for rule in egress)
    if stack == "dev":
        postgres = NetworkInputs().postgres
        ingress = manifest(out, "data", "NetworkPolicy", "allow-db-bootstrap-to-postgres-ingress")["spec"]
        assert ingress["podSelector"]["matchLabels"] == dict(postgres.labels)  # type: ignore[union-attr]
        (source,) = ingress["ingress"][0]["from"]
        assert _selects(source["podSelector"], labels)
        assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "jan"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_admin_credential_outputs_name_secrets_the_render_creates(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    for command in release_layer.admin_credentials().values():
        words = command.split()
        namespace, secret = words[2], words[words.index("secret") + 1]
        key = re.search(r"\{\.data\.([A-Za-z0-9_-]+)\}", command)
        assert key is not None, command
        assert key.group(1) in manifest(rendered[stack], namespace, "Secret", secret)["stringData"], command
