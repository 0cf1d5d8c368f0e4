"""Postgres metrics for Prometheus, whichever server a stack runs. Decisions:

- CloudNativePG (the dev stack's in-cluster server) exports its own metrics: every instance serves its
  default monitoring queries (`cnpg_*`) on the `metrics` port. A PodMonitor of the observability
  component scrapes them; it is ours rather than the `cluster` chart's, because that chart's PodMonitor
  would make the Postgres release wait for kube-prometheus-stack's CRDs, which the data services
  are built before.
- RDS exports nothing to Prometheus, so those stacks run prometheus-postgres-exporter (`pg_*`) against
  it, logged in as a `pg_monitor` role the bootstrap Job creates (`infra.database.EXPORTER_ROLE`),
  with TLS as RDS forces it; a ServiceMonitor scrapes it.
- The Postgres dashboard and `PostgresConnectionsNearLimit` query both families, joined with `or`,
  so one dashboard and one rule work on every stack (`CNPG_METRICS` and `EXPORTER_METRICS` are what
  each source exports and what the queries may use).
"""

from __future__ import annotations

from typing import Any

from infra.versions import IMAGES

EXPORTER_RELEASE = "postgres-exporter"
EXPORTER_SECRET = "postgres-exporter"  # noqa: S105 - a Secret's name
EXPORTER_PASSWORD_KEY = "password"  # noqa: S105 - a key in that Secret
CNPG_METRICS_PORT = "metrics"

# CloudNativePG's instance exporter (its default monitoring queries).
CNPG_METRICS = frozenset(
    {
        "cnpg_collector_up",
        "cnpg_backends_total",
        "cnpg_pg_settings_setting",
        "cnpg_pg_database_size_bytes",
        "cnpg_pg_replication_lag",
        "cnpg_pg_stat_database_xact_commit",
        "cnpg_pg_stat_database_xact_rollback",
    }
)
# prometheus-postgres-exporter's default collectors (database, stat_database, settings, replication).
EXPORTER_METRICS = frozenset(
    {
        "pg_up",
        "pg_stat_database_numbackends",
        "pg_settings_max_connections",
        "pg_database_size_bytes",
        "pg_replication_lag_seconds",
        "pg_stat_database_xact_commit",
        "pg_stat_database_xact_rollback",
    }
)


def connections_ratio(group: str) -> str:
    """Connections over `max_connections` per server, from either exporter (the alert and the panel)."""
    cnpg = (
        f"sum by ({group}) (cnpg_backends_total)"
        f' / max by ({group}) (cnpg_pg_settings_setting{{name="max_connections"}})'
    )
    exporter = (
        f"sum by ({group}) (pg_stat_database_numbackends) / max by ({group}) (pg_settings_max_connections)"
    )
    return f"({cnpg}) or ({exporter})"


def cnpg_pod_monitor(namespace: str, cluster: str, monitor_namespace: str) -> dict[str, Any]:
    """Scrape every instance of the CNPG `Cluster` named `cluster` in `namespace`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {
            "name": f"cnpg-{cluster}",
            "namespace": monitor_namespace,
            "labels": {"app.kubernetes.io/part-of": "jan"},
        },
        "spec": {
            "selector": {"matchLabels": {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"}},
            "namespaceSelector": {"matchNames": [namespace]},
            "podMetricsEndpoints": [{"port": CNPG_METRICS_PORT}],
        },
    }


def exporter_values(host: object, port: object, user: str, database: str = "postgres") -> dict[str, Any]:
    """prometheus-postgres-exporter against one server; the password comes from `EXPORTER_SECRET`.

    `host` and `port` may be Pulumi outputs (the RDS instance's address): they are passed through.
    """
    image = IMAGES["postgres-exporter"]
    registry, repository = image.repository.split("/", 1)
    return {
        "image": {"registry": registry, "repository": repository, "tag": image.tag},
        "config": {
            "datasource": {
                "host": host,
                "port": port,
                "user": user,
                "passwordSecret": {"name": EXPORTER_SECRET, "key": EXPORTER_PASSWORD_KEY},
                "database": database,
                "sslmode": "require",
            },
        },
        "serviceMonitor": {"enabled": True},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
