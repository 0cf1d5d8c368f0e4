"""RDS PostgreSQL for the apps, behind the `DatabaseEndpoint` interface (`infra/database.py`).

Decisions:
- `max_connections` is set in the parameter group from the instance class's published memory by
  RDS's own formula (`infra.connections`), the figure the apps' pools are sized against.
- Private subnets only, reachable only from the cluster's security group, TLS forced
  (`rds.force_ssl=1`), storage encrypted, gp3 with storage autoscaling.
- Backups with point-in-time recovery everywhere (`backupRetentionDays`); prod adds multi-AZ,
  deletion protection (AWS's and Pulumi's `protect`), a final snapshot on delete, and Postgres logs in
  CloudWatch. Outside prod a
  stack can be destroyed without leftovers.
- The master password is generated (pulumi-random) and stays a Pulumi secret; apps never see it:
  the bootstrap Job uses it to create one role and database per app, and a `pg_monitor` login for
  the Postgres exporter (`database.EXPORTER_ROLE`; observability runs the exporter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra import connections, database
from infra.config import DatabaseConfig
from infra.naming import Naming

POSTGRES_PORT = 5432
ADMIN_USER = "jan_admin"


@dataclass(frozen=True, kw_only=True)
class RdsDatabaseArgs:
    naming: Naming
    spec: DatabaseConfig
    production: bool
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]
    namespace: pulumi.Input[str]
    databases: Mapping[str, str]
    service_roles: Sequence[str] = ()


class RdsDatabase(pulumi.ComponentResource):
    """An RDS instance plus the per-app roles, databases and DSN Secrets."""

    endpoint: database.DatabaseEndpoint

    def __init__(self, name: str, args: RdsDatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:RdsDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec, naming = args.spec, args.naming
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Postgres from the cluster only",
            vpc_id=args.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp",
                    from_port=POSTGRES_PORT,
                    to_port=POSTGRES_PORT,
                    security_groups=[args.client_security_group_id],
                    description="EKS cluster security group",
                )
            ],
            tags=naming.tags("postgres"),
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=list(args.subnet_ids), opts=child)
        major = spec.engine_version.split(".")[0]
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                # The figure the apps' pools are sized against (`infra.connections`), written rather
                # than left to RDS's default; a static parameter, so it applies at the next reboot.
                aws.rds.ParameterGroupParameterArgs(
                    name="max_connections",
                    value=str(connections.rds_max_connections(spec.instance_class)),
                    apply_method="pending-reboot",
                ),
            ],
            opts=child,
        )
        password = random.RandomPassword(f"{name}-admin", length=32, special=False, opts=child)
        instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=spec.engine_version,
            instance_class=spec.instance_class,
            allocated_storage=spec.storage_gib,
            max_allocated_storage=spec.max_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            username=ADMIN_USER,
            password=password.result,
            multi_az=args.production,
            backup_retention_period=spec.backup_retention_days,
            backup_window="02:00-03:00",
            maintenance_window="sun:03:30-sun:04:30",
            copy_tags_to_snapshot=True,
            deletion_protection=args.production,
            skip_final_snapshot=not args.production,
            final_snapshot_identifier=naming("postgres-final") if args.production else None,
            enabled_cloudwatch_logs_exports=["postgresql"] if args.production else [],
            auto_minor_version_upgrade=True,
            apply_immediately=not args.production,
            tags=naming.tags("postgres"),
            # In prod, Pulumi refuses to delete the instance too (on top of AWS deletion protection).
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.production)),
        )
        self.endpoint = database.bootstrap(
            name,
            database.BootstrapArgs(
                naming=naming,
                host=instance.address,
                port=instance.port,
                admin_user=ADMIN_USER,
                admin_password=password.result,
                ssl_mode="require",
                namespace=args.namespace,
                databases=args.databases,
                service_roles=args.service_roles,
                # RDS exports no Postgres metrics to Prometheus: the exporter logs in with this role.
                monitoring_roles=(database.EXPORTER_ROLE,),
            ),
            parent=self,
        )
        self.register_outputs({"host": self.endpoint.host})
