"""The database interface every Postgres backend satisfies, and the bootstrap Job they share.

A backend (RDS, or the in-cluster CloudNativePG server of the dev stack) provides a server and an admin login;
`bootstrap()` then gives each app its own role and database, and a Secret `<app>-database` in the apps
namespace holding `DATABASE_URL` (the variable the apps read). Apps and releases only ever see a
`DatabaseEndpoint`, so they do not know which backend they run on. Platform services with their own
database (Keycloak) get a role and database from the same Job (`service_roles`); their login is
handed back as `DatabaseEndpoint.service_passwords`, and the service's component writes it in the
shape its chart reads, in its own namespace.

Decisions:
- Roles and databases are created by a Kubernetes Job running psql inside the cluster, because the
  machine running `pulumi up` usually cannot reach a private database. The script is idempotent
  (`CREATE … WHERE NOT EXISTS`, then `ALTER ROLE … PASSWORD`), so re-running it rotates passwords
  to whatever the stack holds.
- The Job's name carries a hash of its script and inputs: Jobs are immutable, so a change makes a new
  Job instead of a failed patch. Pulumi waits for the Job to complete; releases depend on `ready`.
- Passwords come from pulumi-random (alphanumeric, so DSNs need no escaping) and stay Pulumi secrets
  (everything derived from them, DSNs included, inherits the secret mark);
  they reach psql through mounted Secret files, never the command line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.naming import Naming
from infra.versions import POSTGRES_CLIENT_IMAGE

DSN_KEY = "DATABASE_URL"
ADMIN_SECRET = "jan-db-admin"  # noqa: S105 - a Secret's name, not a password
ROLES_SECRET = "jan-db-roles"  # noqa: S105 - a Secret's name, not a password
_ROLES_DIR = "/run/secrets/roles"
# The login Prometheus' Postgres exporter uses where the server exports no metrics itself (RDS).
EXPORTER_ROLE = "postgres_exporter"

BOOTSTRAP_SCRIPT = """\
set -eu
for role in $ROLES; do
  ROLE_PASSWORD="$(cat "$ROLES_DIR/$role")" psql -v ON_ERROR_STOP=1 -v role="$role" <<'SQL'
\\getenv password ROLE_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\\gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
GRANT :"role" TO CURRENT_USER;
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'role')\\gexec
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
for role in ${MONITORING_ROLES:-}; do
  ROLE_PASSWORD="$(cat "$ROLES_DIR/$role")" psql -v ON_ERROR_STOP=1 -v role="$role" <<'SQL'
\\getenv password ROLE_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\\gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
GRANT pg_monitor TO :"role";
SQL
done
"""


@dataclass(frozen=True, slots=True)
class DatabaseEndpoint:
    """Where the apps' databases live and which Secret holds each app's DSN."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    dsn_secrets: Mapping[str, str]
    ready: pulumi.Resource
    service_passwords: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """role (= database) of a platform service -> its password (a Pulumi secret)"""


@dataclass(frozen=True, kw_only=True)
class BootstrapArgs:
    naming: Naming
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    admin_user: pulumi.Input[str]
    admin_password: pulumi.Output[str]
    ssl_mode: str
    namespace: pulumi.Input[str]
    databases: Mapping[str, str]
    """app name (`media-api`) -> role and database name (`media_api`)"""
    service_roles: Sequence[str] = ()
    """roles and databases of platform services (`keycloak`); no DSN Secret in the apps namespace"""
    monitoring_roles: Sequence[str] = ()
    """login roles without a database, granted `pg_monitor` (a metrics exporter reads every database's
    statistics with it, though the apps' databases are closed to PUBLIC)"""
    depends_on: Sequence[pulumi.Resource] = ()
    """What must exist before the Job runs (the in-cluster server's release)."""


def bootstrap(name: str, args: BootstrapArgs, parent: pulumi.Resource) -> DatabaseEndpoint:
    """Create the per-app roles, databases and DSN Secrets; children are parented to `parent`, whose
    Kubernetes provider they inherit."""
    opts = pulumi.ResourceOptions(parent=parent)
    labels = args.naming.labels("database")
    passwords = {
        role: random.RandomPassword(
            f"{name}-{role}", length=32, special=False, opts=pulumi.ResourceOptions(parent=parent)
        )
        for role in [*args.databases.values(), *args.service_roles, *args.monitoring_roles]
    }
    dsn_secrets: dict[str, str] = {}
    for app, role in args.databases.items():
        secret_name = f"{app}-database"
        dsn = pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{0}?ssl={4}",
            role,
            passwords[role].result,
            args.host,
            args.port,
            args.ssl_mode,
        )
        k8s.core.v1.Secret(
            f"{name}-{app}-dsn",
            metadata=_meta(secret_name, args.namespace, labels),
            string_data={DSN_KEY: dsn},
            opts=opts,
        )
        dsn_secrets[app] = secret_name
    admin = k8s.core.v1.Secret(
        f"{name}-admin",
        metadata=_meta(ADMIN_SECRET, args.namespace, labels),
        string_data={
            "PGHOST": args.host,
            "PGPORT": args.port.apply(str),
            "PGUSER": args.admin_user,
            "PGPASSWORD": args.admin_password,
            "PGDATABASE": "postgres",
            "PGSSLMODE": args.ssl_mode,
        },
        opts=opts,
    )
    roles = k8s.core.v1.Secret(
        f"{name}-roles",
        metadata=_meta(ROLES_SECRET, args.namespace, labels),
        string_data={role: password.result for role, password in passwords.items()},
        opts=opts,
    )
    owning = sorted(set(passwords) - set(args.monitoring_roles))
    monitoring = sorted(args.monitoring_roles)
    job = k8s.batch.v1.Job(
        f"{name}-bootstrap",
        metadata=_meta(f"jan-db-bootstrap-{job_hash(owning, monitoring)}", args.namespace, labels),
        spec=_job_spec(owning, monitoring, labels),
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[admin, roles, *args.depends_on])
        ),
    )
    service_passwords = {
        role: passwords[role].result for role in [*args.service_roles, *args.monitoring_roles]
    }
    return DatabaseEndpoint(
        host=args.host,
        port=args.port,
        dsn_secrets=dsn_secrets,
        ready=job,
        service_passwords=service_passwords,
    )


def job_hash(roles: Sequence[str], monitoring_roles: Sequence[str] = ()) -> str:
    parts = [BOOTSTRAP_SCRIPT, POSTGRES_CLIENT_IMAGE, *roles]
    if monitoring_roles:  # the name of a Job without them stays what it was
        parts += ["monitoring", *monitoring_roles]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def _meta(name: str, namespace: pulumi.Input[str], labels: Mapping[str, str]) -> k8s.meta.v1.ObjectMetaArgs:
    return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels))


def _job_spec(
    roles: Sequence[str], monitoring_roles: Sequence[str], labels: Mapping[str, str]
) -> k8s.batch.v1.JobSpecArgs:
    container = k8s.core.v1.ContainerArgs(
        name="psql",
        image=POSTGRES_CLIENT_IMAGE,
        command=["/bin/sh", "-c", BOOTSTRAP_SCRIPT],
        env=[
            k8s.core.v1.EnvVarArgs(name="ROLES", value=" ".join(roles)),
            k8s.core.v1.EnvVarArgs(name="MONITORING_ROLES", value=" ".join(monitoring_roles)),
            k8s.core.v1.EnvVarArgs(name="ROLES_DIR", value=_ROLES_DIR),
        ],
        env_from=[
            k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=ADMIN_SECRET))
        ],
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="roles", mount_path=_ROLES_DIR, read_only=True)],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "128Mi"}
        ),
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            run_as_user=70,  # the image's postgres user
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
    )
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=6,
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(labels)),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="OnFailure",
                containers=[container],
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name="roles",
                        secret=k8s.core.v1.SecretVolumeSourceArgs(
                            secret_name=ROLES_SECRET, default_mode=0o440
                        ),
                    )
                ],
                security_context=k8s.core.v1.PodSecurityContextArgs(fs_group=70),
            ),
        ),
    )
