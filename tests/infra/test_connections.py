"""The apps' database connections fit the database, by construction and by validation.

Every stack file is budgeted (`infra.connections`): the worst case of every app (most pods at once x
processes per pod x pool + overflow, plus what a process opens outside its pool), Keycloak's pool, the
migration Jobs, Postgres' reserved slots and the admin margin stay under the `max_connections` the
program sets. The render shows the same figures: the pools in each app's env, the server's
`max_connections` in the RDS parameter group or CNPG's `Cluster`, Keycloak's pool, the HPA's most
replicas and the Deployment's surge.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from apps.gateway.routes import AppName
from infra import connections
from infra.config import REPO_ROOT, ConfigError, StackConfig, load_stack_file, parse, stack_file, stack_values
from infra.connections import MIN_POOL, Pool
from infra.instances import RDS_MEMORY_GIB
from tests.infra.conftest import STACKS, Rendered

STACK_FILES = sorted([*(REPO_ROOT / "stacks").glob("Pulumi.*.yaml"), REPO_ROOT / "Pulumi.dev.yaml"])


def _objects(rendered: Rendered, kind: str) -> dict[str, dict[str, Any]]:
    return {
        item["inputs"]["metadata"]["name"]: item["inputs"]
        for item in rendered.resources
        if item["type"].startswith("kubernetes:") and item["inputs"].get("kind") == kind
    }


def _parse(stack: str, database: dict[str, Any]) -> StackConfig:
    values = stack_values(stack_file(stack))
    values["jan-server:database"] = database
    return parse(values)


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda path: path.name)
def test_every_stack_files_apps_fit_its_database(path: Path) -> None:
    config = load_stack_file(path)
    found = connections.budget(config)
    assert found.total <= found.max_connections
    for app, pool in found.pools.items():
        assert pool.size >= MIN_POOL, app
        need = connections.unconstrained(app)
        assert pool.size <= need.size and pool.overflow <= need.overflow, app


def test_the_shipped_stacks_budgets() -> None:
    """The figures the README quotes: staging shares db.t4g.medium's 450, prod has room for all."""
    staging = connections.budget(load_stack_file(stack_file("staging")))
    assert staging.max_connections == 450 and staging.pods == 13  # 10 replicas + 3 surging
    assert staging.pools == {
        AppName.LLM_API: Pool(15, 0),
        AppName.RESPONSE_API: Pool(7, 0),
        AppName.MEDIA_API: Pool(3, 0),
        AppName.MCP_TOOLS: Pool(3, 0),
    }
    assert staging.total == 414
    prod = connections.budget(load_stack_file(stack_file("prod")))
    assert prod.max_connections == 1802
    assert prod.pools == {app: connections.unconstrained(app) for app in AppName}
    assert connections.unconstrained(AppName.LLM_API) == Pool(18, 2)  # admission's 16 + 2 flushers
    dev = connections.budget(load_stack_file(stack_file("dev")))
    assert dev.max_connections == 200 and dev.pods == 2 and dev.total <= 200


def test_llm_api_gets_the_largest_share_when_connections_are_short() -> None:
    pools = connections.budget(load_stack_file(stack_file("staging")), server_max=300).pools
    sizes = {app: pool.total for app, pool in pools.items()}
    assert sizes[AppName.LLM_API] > sizes[AppName.RESPONSE_API] > sizes[AppName.MEDIA_API]
    assert sizes[AppName.MEDIA_API] == sizes[AppName.MCP_TOOLS] >= MIN_POOL


def test_rds_max_connections_is_rdss_formula_on_the_published_memory() -> None:
    assert connections.rds_max_connections("db.t4g.micro") == 112
    assert connections.rds_max_connections("db.t4g.medium") == 450
    assert connections.rds_max_connections("db.r7g.large") == 1802
    assert connections.rds_max_connections("db.r7g.4xlarge") == 5000  # LEAST(..., 5000)
    assert all(name.startswith("db.") for name in RDS_MEMORY_GIB)


def test_a_tiny_instance_for_many_replicas_is_refused_with_what_to_change() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse("staging", {"mode": "rds", "instanceClass": "db.t4g.micro"})
    assert str(caught.value).splitlines()[1:] == [
        "  jan-server:database.instanceClass: db.t4g.micro's max_connections is 112; after 37 reserved "
        "(Postgres, admin, Keycloak, migrations), mcp-tools, media-api, response-api get under 2 "
        "connections per process at 13 pods per app (10 replicas + the rollout surge); the apps need "
        "max_connections of at least 258; use an instance class with more memory (db.t4g.medium: 450)"
    ]


def test_an_in_cluster_server_too_small_names_the_figure_that_fits() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse("staging", {"mode": "in-cluster", "maxConnections": 100})
    message = str(caught.value)
    assert "jan-server:database.maxConnections: max_connections is 100;" in message
    assert message.endswith("raise it to 258")
    fits = _parse("staging", {"mode": "in-cluster", "maxConnections": 258})
    assert connections.budget(fits).total <= 258
    with pytest.raises(ConfigError):
        _parse("staging", {"mode": "in-cluster", "maxConnections": 257})


def test_an_unlisted_instance_class_is_an_error_saying_where_to_add_it() -> None:
    with pytest.raises(ConfigError) as caught:
        _parse("staging", {"mode": "rds", "instanceClass": "db.x9.huge"})
    assert "database.instanceClass: no published memory for 'db.x9.huge'; add it to infra/instances.py" in (
        str(caught.value)
    )


def _server_max(config: StackConfig, rendered: Rendered) -> int:
    if config.database.mode.value == "rds":
        (group,) = rendered.of_type("aws:rds/parameterGroup:ParameterGroup")
        parameters = {entry["name"]: entry for entry in group["inputs"]["parameters"]}
        assert parameters["max_connections"]["applyMethod"] == "pending-reboot"
        return int(parameters["max_connections"]["value"])
    cluster = _objects(rendered, "Cluster")["postgres"]
    return int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])


@pytest.mark.parametrize("stack", STACKS)
def test_the_render_sets_the_budgeted_pools_and_the_servers_max_connections(
    stack: str, rendered: dict[str, Rendered]
) -> None:
    config = load_stack_file(stack_file(stack))
    found = connections.budget(config)
    render = rendered[stack]
    server_max = _server_max(config, render)
    assert server_max == found.max_connections
    config_maps = _objects(render, "ConfigMap")
    hpas = _objects(render, "HorizontalPodAutoscaler")
    deployments = _objects(render, "Deployment")
    total = sum(found.reserved.values())
    for app in AppName:
        env = config_maps[app.value]["data"]
        pool = Pool(int(env["DB_POOL_SIZE"]), int(env["DB_MAX_OVERFLOW"]))
        assert pool == found.pools[app] and pool.size >= MIN_POOL
        workers = int(env["WEB_CONCURRENCY"])
        deployment = deployments[app.value]
        most = hpas[app.value]["spec"]["maxReplicas"] if app.value in hpas else deployment["spec"]["replicas"]
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        pods = most + math.ceil(most * int(surge.rstrip("%")) / 100)
        assert pods == found.pods
        total += pods * workers * (pool.total + connections.OUTSIDE_POOL.get(app, 0))
    assert total == found.total <= server_max


@pytest.mark.parametrize("stack", STACKS)
def test_keycloaks_pool_is_the_one_budgeted(stack: str, rendered: dict[str, Rendered]) -> None:
    sets = _objects(rendered[stack], "StatefulSet")
    (keycloak,) = [body for name, body in sets.items() if "keycloak" in name]
    (container,) = [c for c in keycloak["spec"]["template"]["spec"]["containers"] if c["name"] == "keycloak"]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["KC_DB_POOL_MAX_SIZE"] == str(connections.KEYCLOAK_POOL)
