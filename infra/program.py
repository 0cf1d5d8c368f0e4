"""The platform program: stack config in, components wired together, a few stack outputs out.

`pulumi up` runs it through `infra/__main__.py`; `jan-server render` runs the same `main()` under the
mock engine, in four steps:
1. `build()`: the foundation (network, cluster, GPU pools; on AWS RDS and S3).
2. `infra.services.build_security()`: every namespace and NetworkPolicy.
3. `with_in_cluster_data()`: what the stack keeps in the cluster (the dev stack's CloudNativePG and
   SeaweedFS, in the security component's `data` namespace), behind the same interfaces as RDS and S3
   (`DatabaseEndpoint`, `ObjectStoreEndpoint`); then `infra.services.build_services()` (observability,
   Kong, Keycloak with its database login from the `DatabaseEndpoint`, model servers, search, sandbox).
4. `with_release()`: the four apps as Helm releases (`infra/release.py`), wired from the services.
The layers import downwards only (`program > release > services > foundation > components > specs`,
an import-linter contract); `Platform` (`infra.foundation`) is what the later layers take whole.
Every Postgres gets one bootstrap Job for the apps' roles and Keycloak's (`SERVICE_DATABASES`).

Adding a component: a module in `infra/components/` with a frozen keyword-only `<Name>Args` dataclass
and one `ComponentResource` (type `jan:platform:<Name>`, children parented, so they inherit the
providers its `opts` carry: the `k8s.Provider` from `Platform.cluster`, the AWS provider); pin its
charts and images in `infra/versions.py` (upstream charts are installed from their repositories, ours
come from `charts/`) and deploy them with `infra.helm`; build it here from `Platform`; if it calls a
new invoke, answer it in `infra/mock_engine.py`. Its tests read the render (`tests/infra/conftest.py`),
which also validates every object it adds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi
import pulumi_aws as aws

from apps.gateway.routes import APPS, AppName
from infra import release as release_layer
from infra.components.cluster import Cluster, ClusterArgs
from infra.components.cluster_addons import ClusterAddons, ClusterAddonsArgs
from infra.components.database import RdsDatabase, RdsDatabaseArgs
from infra.components.gpu_pools import GpuNodePools, GpuNodePoolsArgs
from infra.components.identity import DATABASE as KEYCLOAK_DATABASE
from infra.components.in_cluster_data import (
    DATA_NAMESPACE,
    CloudNativePg,
    CloudNativePgArgs,
    SeaweedFs,
    SeaweedFsArgs,
)
from infra.components.network import Network, NetworkArgs
from infra.components.object_store import ObjectStore, ObjectStoreArgs
from infra.components.security import Security
from infra.config import DatabaseMode, Environment, ObjectStoreMode, StackConfig, load_from_pulumi
from infra.foundation import Platform
from infra.naming import Naming
from infra.release import Release
from infra.services import Services, build_security, build_services

# One role and database per app, named after the app's schema.
APP_DATABASES: dict[str, str] = {spec.name.value: spec.schema for spec in APPS.values() if spec.schema}
# Platform services with their own database on the same Postgres.
SERVICE_DATABASES = (KEYCLOAK_DATABASE,)


@dataclass(frozen=True, slots=True)
class Deployed:
    """What one run of the program built: the foundation, the services on it and the apps' release."""

    platform: Platform
    services: Services
    release: Release


def main() -> Deployed:
    foundation = build(load_from_pulumi())
    security = build_security(foundation)
    platform = with_in_cluster_data(foundation, security)
    services = build_services(platform, security)
    release = with_release(platform, services)
    pulumi.export("appsNamespace", platform.cluster.apps_namespace)
    if platform.cluster.eks is not None:
        pulumi.export("clusterName", platform.cluster.eks.name)
    if platform.database is not None:
        pulumi.export("databaseHost", platform.database.host)
        pulumi.export("databaseSecrets", dict(platform.database.dsn_secrets))
    if platform.object_store is not None:
        pulumi.export("mediaBucket", platform.object_store.bucket)
    release_layer.export(platform.config, release)
    return Deployed(platform, services, release)


def build(config: StackConfig) -> Platform:
    naming = Naming(config.environment, config.owner)
    production = config.environment is Environment.PROD
    if not config.on_aws:
        image = release_layer.image_repository(config, naming, None)
        cluster = Cluster(naming("cluster"), ClusterArgs(naming=naming, spec=config.cluster))
        return Platform(
            config=config,
            naming=naming,
            cluster=cluster,
            database=None,
            object_store=None,
            image_repository=image,
        )

    aws_provider = aws.Provider(
        naming("aws"),
        region=config.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=naming.default_tags),
    )
    # Before anything else: a missing image stops here, not in a Helm timeout at the end.
    image = release_layer.image_repository(config, naming, pulumi.InvokeOptions(provider=aws_provider))
    on_aws = pulumi.ResourceOptions(providers=[aws_provider])
    cluster_name = naming("eks")
    network = Network(
        naming("network"),
        NetworkArgs(
            naming=naming,
            cidr=config.network.cidr,
            availability_zones=config.network.availability_zones,
            cluster_name=cluster_name,
            nat_per_az=production,
            flow_logs=production,
        ),
        on_aws,
    )
    cluster = Cluster(
        naming("cluster"),
        ClusterArgs(
            naming=naming,
            spec=config.cluster,
            region=config.region,
            private_subnet_ids=network.private_subnet_ids,
            public_subnet_ids=network.public_subnet_ids,
            control_plane_logs=production,
        ),
        on_aws,
    )
    eks = cluster.eks
    assert eks is not None  # cluster.mode is eks on AWS (a config rule)
    on_aws_and_cluster = pulumi.ResourceOptions(providers=[aws_provider, cluster.provider])
    addons = ClusterAddons(
        naming("addons"),
        ClusterAddonsArgs(cluster=eks, region=config.region or "", vpc_id=network.vpc_id),
        on_aws_and_cluster,
    )
    gpu_pools = None
    if config.gpu_pools:
        gpu_pools = GpuNodePools(
            naming("gpu"),
            GpuNodePoolsArgs(naming=naming, cluster=eks, pools=config.gpu_pools),
            on_aws_and_cluster,
        )
    database = None
    if config.database.mode is DatabaseMode.RDS:
        database = RdsDatabase(
            naming("database"),
            RdsDatabaseArgs(
                naming=naming,
                spec=config.database,
                production=production,
                vpc_id=network.vpc_id,
                subnet_ids=network.private_subnet_ids,
                client_security_group_id=eks.security_group_id,
                namespace=cluster.apps_namespace,
                databases=APP_DATABASES,
                service_roles=SERVICE_DATABASES,
            ),
            on_aws_and_cluster,
        ).endpoint
    object_store = None
    if config.object_store.mode is ObjectStoreMode.S3:
        object_store = ObjectStore(
            naming("objects"),
            ObjectStoreArgs(
                naming=naming,
                production=production,
                abandoned_upload_days=config.object_store.abandoned_upload_days,
                cors_origins=tuple(config.gateway.cors_origins),
                cluster_name=eks.name,
                namespace=cluster.apps_namespace,
                service_account=AppName.MEDIA_API.value,
                region=config.region or "",
            ),
            on_aws,
        ).endpoint
    return Platform(
        config=config,
        naming=naming,
        cluster=cluster,
        database=database,
        object_store=object_store,
        aws_provider=aws_provider,
        image_repository=image,
        gpu_pools=gpu_pools,
        addons=addons,
    )


def with_in_cluster_data(platform: Platform, security: Security) -> Platform:
    """CloudNativePG and SeaweedFS for whatever the stack keeps in the cluster."""
    config, naming, cluster = platform.config, platform.naming, platform.cluster
    in_cluster_db = config.database.mode is DatabaseMode.IN_CLUSTER
    in_cluster_s3 = config.object_store.mode is ObjectStoreMode.IN_CLUSTER
    database, object_store = platform.database, platform.object_store
    on_cluster = platform.on_cluster()
    if in_cluster_db:
        database = CloudNativePg(
            naming("postgres"),
            CloudNativePgArgs(
                naming=naming,
                spec=config.database,
                production=config.environment is Environment.PROD,
                namespace=_name_of(security, DATA_NAMESPACE),
                operator_namespace=_name_of(security, security.inputs.cnpg_operator.namespace),
                apps_namespace=cluster.apps_namespace,
                databases=APP_DATABASES,
                service_roles=SERVICE_DATABASES,
            ),
            on_cluster,
        ).endpoint
    if in_cluster_s3:
        object_store = SeaweedFs(
            naming("objects"),
            SeaweedFsArgs(
                naming=naming,
                namespace=_name_of(security, DATA_NAMESPACE),
                apps_namespace=cluster.apps_namespace,
                bucket=naming("media"),
                service_account=AppName.MEDIA_API.value,
            ),
            on_cluster,
        ).endpoint
    return replace(platform, database=database, object_store=object_store)


def _name_of(security: Security, namespace: str) -> pulumi.Output[str]:
    """A namespace's name as an Output of the security component's Namespace, so users wait for it."""
    return security.namespaces[namespace].metadata.apply(lambda meta: str(meta.name))


def with_release(platform: Platform, services: Services) -> Release:
    """The four apps, once the stack has a database, an object store and the services; building it
    earlier is a programming error and fails (`MissingPhase`) instead of silently deploying no apps."""
    return release_layer.deploy(platform=platform, services=services)
