"""The apps' Postgres connections fit the server: a budget the program sizes the pools from, and the
check that refuses a stack where they cannot fit.

Decisions:
- The server's `max_connections` is set by the program, never left to a default it did not read: on
  RDS the parameter group carries RDS's own formula, LEAST(memory / 9531392, 5000), applied to the
  memory AWS publishes for the instance class (`infra.instances.RDS_MEMORY_GIB`; RDS's default uses the
  memory left after the OS, a few percent less, so the figure is written rather than assumed);
  in-cluster, CNPG's `Cluster` gets `database.maxConnections`.
- Worst case per app: every pod the Deployment may run at once (the HPA's most, plus the rolling
  update's 25 % surge: `maxSurge` in charts/jan-app's Deployment) times the worker processes per pod
  (the program sets `WEB_CONCURRENCY`) times each process's pool and overflow, plus what a process
  opens outside its pool (response-api's LISTEN connection for cancellations).
- Taken off the top: `superuser_reserved_connections` (3), a margin for admin sessions, the bootstrap
  Job and the Postgres exporter (CNPG's own or the chart's), Keycloak's pool per replica (the program
  sets `KC_DB_POOL_MAX_SIZE`; Keycloak's default is 100), and one connection per app's migration Job
  (the four releases may run their hooks at once).
- The rest is shared by weight (llm-api's turns are most of the traffic), each app capped at the
  pool it would use unconstrained (llm-api's derived from admission, the kit's 10 + 10 for the
  others); what a capped app leaves goes to the others. A process's pool keeps its connections and
  the overflow is what is left of its share, so a small share waits for a connection instead of
  making Postgres refuse one.
- A stack whose smallest share is under `MIN_POOL` per process fails validation, naming the knob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.common.settings import AdmissionSettings, ServiceSettings
from apps.gateway.routes import AppName
from apps.llm_api.settings import TURN_FLUSHERS, UNADMITTED_CONNECTIONS
from infra.instances import RDS_MEMORY_GIB

if TYPE_CHECKING:
    from infra.config import StackConfig

BYTES_PER_CONNECTION = 9531392  # RDS's default max_connections formula for Postgres
RDS_MOST_CONNECTIONS = 5000
SUPERUSER_RESERVED = 3  # Postgres' superuser_reserved_connections default, which RDS and CNPG keep
ADMIN_MARGIN = 10  # psql sessions, the bootstrap Job, the Postgres exporter, CNPG's instance manager
KEYCLOAK_POOL = 20  # KC_DB_POOL_MAX_SIZE per Keycloak replica
MIN_POOL = 2
WORKERS_PER_POD = 1  # `jan-server serve` processes per pod (WEB_CONCURRENCY): the HPA scales pods
ROLLOUT_SURGE = 0.25  # charts/jan-app's Deployment: maxSurge 25%, maxUnavailable 0
NON_DEV_MAX_REPLICAS = 10
# Connections a process holds outside its pool.
OUTSIDE_POOL = {AppName.RESPONSE_API: 1}  # the NotifyListener's LISTEN connection
WEIGHTS = {AppName.LLM_API: 4, AppName.RESPONSE_API: 2, AppName.MEDIA_API: 1, AppName.MCP_TOOLS: 1}


@dataclass(frozen=True, slots=True)
class Pool:
    size: int
    overflow: int

    @property
    def total(self) -> int:
        return self.size + self.overflow

    def env(self) -> dict[str, str]:
        return {"DB_POOL_SIZE": str(self.size), "DB_MAX_OVERFLOW": str(self.overflow)}


def unconstrained(app: AppName) -> Pool:
    """The pool an app process uses when the server has room: what its settings derive by default."""
    if app is AppName.LLM_API:
        return Pool(AdmissionSettings().max_concurrent + TURN_FLUSHERS, UNADMITTED_CONNECTIONS)
    fields = ServiceSettings.model_fields
    return Pool(int(fields["db_pool_size"].default), int(fields["db_max_overflow"].default))


def app_scale(config: StackConfig) -> tuple[int, int | None]:
    """(replicas, the HPA's most replicas or None for a fixed count) of each app release."""
    if config.environment.value == "dev":
        return 1, None
    return 2, NON_DEV_MAX_REPLICAS


def pods(config: StackConfig) -> int:
    """The most pods of one app at once: its most replicas plus the rolling update's surge."""
    replicas, most = app_scale(config)
    most = most or replicas
    return most + math.ceil(most * ROLLOUT_SURGE)


def rds_max_connections(instance_class: str) -> int:
    return min(RDS_MEMORY_GIB[instance_class] * 2**30 // BYTES_PER_CONNECTION, RDS_MOST_CONNECTIONS)


def max_connections(config: StackConfig) -> int:
    database = config.database
    if database.mode.value == "rds":
        return rds_max_connections(database.instance_class)
    return database.max_connections


@dataclass(frozen=True, slots=True)
class Budget:
    max_connections: int
    reserved: dict[str, int]
    pods: int
    pools: dict[AppName, Pool]

    def app_total(self, app: AppName) -> int:
        """The most connections the app's pods may hold at once."""
        per_process = self.pools[app].total + OUTSIDE_POOL.get(app, 0)
        return self.pods * WORKERS_PER_POD * per_process

    @property
    def total(self) -> int:
        return sum(self.reserved.values()) + sum(self.app_total(app) for app in self.pools)


def budget(config: StackConfig, server_max: int | None = None) -> Budget:
    """Each app's per-process pool on this stack (against `server_max` when given)."""
    server_max = max_connections(config) if server_max is None else server_max
    count = pods(config)
    reserved = {
        "superuser_reserved_connections": SUPERUSER_RESERVED,
        "admin sessions and exporters": ADMIN_MARGIN,
        "keycloak": config.identity.replicas * KEYCLOAK_POOL,
        "migration jobs": len(AppName),
    }
    processes = count * WORKERS_PER_POD
    left = server_max - sum(reserved.values()) - processes * sum(OUTSIDE_POOL.values())
    shares: dict[AppName, int] = {}
    open_apps = sorted(AppName, key=lambda app: -WEIGHTS[app])
    while open_apps:  # fill by weight; an app whose share exceeds its need takes only its need
        weight = sum(WEIGHTS[app] for app in open_apps)
        capped = [
            app for app in open_apps if unconstrained(app).total * processes * weight <= left * WEIGHTS[app]
        ]
        if not capped:
            for app in open_apps:
                shares[app] = max(left * WEIGHTS[app] // (weight * processes), 0)
            break
        for app in capped:
            shares[app] = unconstrained(app).total
            left -= shares[app] * processes
            open_apps.remove(app)
    pools = {}
    for app in AppName:
        need = unconstrained(app)
        size = min(need.size, shares[app])
        pools[app] = Pool(size, min(need.overflow, shares[app] - size))
    return Budget(server_max, reserved, count, pools)


def _fits(config: StackConfig, server_max: int) -> bool:
    return all(pool.size >= MIN_POOL for pool in budget(config, server_max).pools.values())


def check(config: StackConfig) -> list[str]:
    """One `key: problem (what to change)` line when an app process cannot get `MIN_POOL` connections."""
    database = config.database
    rds = database.mode.value == "rds"
    if rds and database.instance_class not in RDS_MEMORY_GIB:
        return [
            f"database.instanceClass: no published memory for {database.instance_class!r}; add it to "
            f"infra/instances.py RDS_MEMORY_GIB or use one of {', '.join(sorted(RDS_MEMORY_GIB))}"
        ]
    found = budget(config)
    short = sorted(app.value for app, pool in found.pools.items() if pool.size < MIN_POOL)
    if not short:
        return []
    needed = next(n for n in range(found.max_connections, 100_000) if _fits(config, n))
    replicas, most = app_scale(config)
    scale = f"{most} replicas" if most else f"{replicas} replica{'s' * (replicas > 1)}"
    head = (
        f"max_connections is {found.max_connections}; after {sum(found.reserved.values())} reserved "
        f"(Postgres, admin, Keycloak, migrations), {', '.join(short)} get under {MIN_POOL} connections "
        f"per process at {found.pods} pods per app ({scale} + the rollout surge); the apps need "
        f"max_connections of at least {needed}"
    )
    if not rds:
        return [f"database.maxConnections: {head}; raise it to {needed}"]
    family = database.instance_class.split(".")[1]
    bigger = sorted(
        (name for name in RDS_MEMORY_GIB if rds_max_connections(name) >= needed),
        key=lambda name: (RDS_MEMORY_GIB[name], name.split(".")[1] != family, name),
    )
    hint = f"use an instance class with more memory ({bigger[0]}: {rds_max_connections(bigger[0])})"
    return [f"database.instanceClass: {database.instance_class}'s {head}; {hint}"]
