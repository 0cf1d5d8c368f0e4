"""The dev stack's data services in the cluster: CloudNativePG and SeaweedFS, behind the same
interfaces as RDS (`DatabaseEndpoint`) and S3 (`ObjectStoreEndpoint`).

Decisions:
- Both run in one `data` namespace (the network policies select them there by label); the CNPG
  operator runs in `cnpg-system`. The security component owns both namespaces (Pod Security
  `baseline`, warn at `restricted`, like the other third-party namespaces); these components deploy
  into them and so wait for them.
- Everything upstream is a pinned Helm release installed from its repository (`infra/versions.py`):
  the CNPG operator chart, CNPG's `cluster` chart for the `Cluster` custom resource, and SeaweedFS.
  The `Cluster` goes through CNPG's own chart rather than a Pulumi CustomResource because its CRD
  comes with the operator release, which the offline render cannot expand: a CustomResource would
  have no schema to be validated against, while the chart's values are asserted by the tests.
- The superuser password is generated (pulumi-random) and handed to CNPG as its `superuserSecret`;
  the per-app roles, databases and DSN Secrets come from the same bootstrap Job RDS uses
  (`infra.database.bootstrap`), against the cluster's `-rw` Service with TLS (CNPG serves TLS by
  default), together with Keycloak's role and database (`service_roles`). The Job retries
  (restartPolicy OnFailure) until the server accepts connections.
- SeaweedFS runs all-in-one (master, volume, filer and S3 gateway in one pod, on a PVC): a dev stack
  needs an S3 API, not a distributed store. S3 auth is on; one identity, media-api's, may use the
  media bucket only; media-api creates the bucket at start (`MEDIA_S3_CREATE_BUCKET`, idempotent), so
  the store needs no bucket hook. The keys are generated and reach
  media-api as a Secret in the apps namespace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import database, helm
from infra.config import DatabaseConfig
from infra.naming import Naming
from infra.object_storage import ACCESS_KEY_ENV, SECRET_KEY_ENV, ObjectStoreEndpoint
from infra.versions import CHARTS, IMAGES

DATA_NAMESPACE = "data"  # `NetworkInputs.object_store`'s namespace, where the store's Service is
POSTGRES_CLUSTER = "postgres"
POSTGRES_PORT = 5432
SUPERUSER = "postgres"
SUPERUSER_SECRET = "postgres-superuser"  # noqa: S105 - a Secret's name
SEAWEEDFS_RELEASE = "seaweedfs"
S3_PORT = 8333
S3_CONFIG_SECRET = "seaweedfs-s3-config"  # noqa: S105 - a Secret's name
S3_CONFIG_KEY = "seaweedfs_s3_config"
MEDIA_S3_SECRET = "media-api-s3"  # noqa: S105 - a Secret's name
IN_CLUSTER_REGION = "us-east-1"  # SeaweedFS accepts any region; boto3 signs with this one


@dataclass(frozen=True, kw_only=True)
class CloudNativePgArgs:
    naming: Naming
    spec: DatabaseConfig
    production: bool
    namespace: pulumi.Output[str]
    operator_namespace: pulumi.Output[str]
    apps_namespace: pulumi.Input[str]
    databases: Mapping[str, str]
    service_roles: Sequence[str] = ()


class CloudNativePg(pulumi.ComponentResource):
    """The CNPG operator, one Postgres `Cluster`, and the per-app roles, databases and DSN Secrets."""

    endpoint: database.DatabaseEndpoint

    def __init__(
        self, name: str, args: CloudNativePgArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jan:platform:CloudNativePg", name, None, opts)
        on_cluster = pulumi.ResourceOptions(parent=self)
        image = IMAGES["postgres"]
        if image.tag.split(".")[0] != args.spec.engine_version.split(".")[0]:
            raise ValueError(
                f"database.engineVersion {args.spec.engine_version} does not match the pinned {image.ref}"
            )
        operator = helm.upstream_release(
            "cnpg",
            CHARTS["cloudnative-pg"],
            namespace=args.operator_namespace,
            values=operator_values(),
            opts=on_cluster,
        )
        password = random.RandomPassword(
            f"{name}-superuser", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        superuser = k8s.core.v1.Secret(
            f"{name}-superuser",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SUPERUSER_SECRET, namespace=args.namespace, labels=args.naming.labels("database")
            ),
            type="kubernetes.io/basic-auth",
            string_data={"username": SUPERUSER, "password": password.result},
            opts=on_cluster,
        )
        cluster = helm.upstream_release(
            POSTGRES_CLUSTER,
            CHARTS["cnpg-cluster"],
            namespace=args.namespace,
            values=cluster_values(args.spec, production=args.production),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[operator, superuser])
            ),
        )
        host = args.namespace.apply(lambda namespace: f"{POSTGRES_CLUSTER}-rw.{namespace}.svc.cluster.local")
        self.endpoint = database.bootstrap(
            name,
            database.BootstrapArgs(
                naming=args.naming,
                host=host,
                port=pulumi.Output.from_input(POSTGRES_PORT),
                admin_user=SUPERUSER,
                admin_password=password.result,
                ssl_mode="require",
                namespace=args.apps_namespace,
                databases=args.databases,
                service_roles=args.service_roles,
                depends_on=[cluster],
            ),
            parent=self,
        )
        self.register_outputs({"host": host})


def operator_values() -> dict[str, object]:
    image = IMAGES["cloudnative-pg"]
    return {
        "image": {"repository": image.repository, "tag": image.tag},
        "crds": {"create": True},
        "config": {"clusterWide": True},
        "monitoring": {"podMonitorEnabled": False},
    }


def cluster_values(spec: DatabaseConfig, *, production: bool) -> dict[str, object]:
    """CNPG's `cluster` chart: one `Cluster` named `postgres` (Services `postgres-rw`, `-ro`, `-r`)."""
    instances = 3 if production else 1
    return {
        "fullnameOverride": POSTGRES_CLUSTER,
        "type": "postgresql",
        "mode": "standalone",
        "version": {"postgresql": spec.engine_version.split(".")[0]},
        "cluster": {
            "instances": instances,
            "imageName": IMAGES["postgres"].ref,
            "storage": {"size": f"{spec.storage_gib}Gi"},
            "enableSuperuserAccess": True,
            "superuserSecret": SUPERUSER_SECRET,
            # A single instance cannot keep a PDB and still be drained.
            "enablePDB": instances > 1,
            "affinity": {"topologyKey": "kubernetes.io/hostname"},
            "monitoring": {"enabled": False},
            # What the apps' pools are sized against (`infra.connections`), not Postgres' default 100.
            "postgresql": {"parameters": {"max_connections": str(spec.max_connections)}},
        },
        "backups": {"enabled": False},
    }


@dataclass(frozen=True, kw_only=True)
class SeaweedFsArgs:
    naming: Naming
    namespace: pulumi.Output[str]
    apps_namespace: pulumi.Input[str]
    bucket: str
    service_account: str
    storage_gib: int = 10


class SeaweedFs(pulumi.ComponentResource):
    """An S3-compatible store with one bucket and one identity (media-api's)."""

    endpoint: ObjectStoreEndpoint

    def __init__(self, name: str, args: SeaweedFsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:SeaweedFs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        on_cluster = pulumi.ResourceOptions(parent=self)
        access_key = random.RandomPassword(f"{name}-access-key", length=20, special=False, opts=child)
        secret_key = random.RandomPassword(f"{name}-secret-key", length=40, special=False, opts=child)
        config = k8s.core.v1.Secret(
            f"{name}-s3-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=S3_CONFIG_SECRET, namespace=args.namespace, labels=args.naming.labels("object-store")
            ),
            string_data={
                S3_CONFIG_KEY: pulumi.Output.all(access_key.result, secret_key.result).apply(
                    lambda keys: s3_identities(args.service_account, args.bucket, keys[0], keys[1])
                )
            },
            opts=on_cluster,
        )
        release = helm.upstream_release(
            SEAWEEDFS_RELEASE,
            CHARTS["seaweedfs"],
            namespace=args.namespace,
            values=seaweedfs_values(args.bucket, args.storage_gib),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[config])),
        )
        k8s.core.v1.Secret(
            f"{name}-media-api",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=MEDIA_S3_SECRET, namespace=args.apps_namespace, labels=args.naming.labels("object-store")
            ),
            string_data={ACCESS_KEY_ENV: access_key.result, SECRET_KEY_ENV: secret_key.result},
            opts=on_cluster,
        )
        self.endpoint = ObjectStoreEndpoint(
            bucket=pulumi.Output.from_input(args.bucket),
            region=IN_CLUSTER_REGION,
            endpoint=f"http://{SEAWEEDFS_RELEASE}-all-in-one.{DATA_NAMESPACE}.svc.cluster.local:{S3_PORT}",
            credentials_secret=MEDIA_S3_SECRET,
            service_account=args.service_account,
            public_endpoint=f"http://localhost:{S3_PORT}",  # `port_forward()`
            create_bucket=True,
            ready=release,
        )
        self.register_outputs({"bucket": self.endpoint.bucket})


def port_forward() -> str:
    """How a developer's browser reaches the dev store (presigned uploads name localhost)."""
    return f"kubectl -n {DATA_NAMESPACE} port-forward svc/{SEAWEEDFS_RELEASE}-all-in-one {S3_PORT}:{S3_PORT}"


def s3_identities(identity: str, bucket: str, access_key: str, secret_key: str) -> str:
    """SeaweedFS's S3 identities file: one identity limited to one bucket."""
    # Admin on its own bucket only: media-api creates the bucket and sets its CORS rule at start.
    actions = [f"{action}:{bucket}" for action in ("Admin", "Read", "Write", "List", "Tagging")]
    document = {
        "identities": [
            {
                "name": identity,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": actions,
            }
        ]
    }
    return json.dumps(document, sort_keys=True)


def seaweedfs_values(bucket: str, storage_gib: int) -> dict[str, object]:
    """All-in-one only: the standalone components (and the standalone S3 gateway, which would look for
    a separate filer) are off; the all-in-one pod serves S3 with auth from the generated identities."""
    return {
        "image": {"tag": IMAGES["seaweedfs"].tag},
        "master": {"enabled": False},
        "volume": {"enabled": False},
        "filer": {"enabled": False},
        "s3": {"enabled": False},
        "allInOne": {
            "enabled": True,
            "s3": {
                "enabled": True,
                "port": S3_PORT,
                "enableAuth": True,
                "existingConfigSecret": S3_CONFIG_SECRET,
                # media-api also creates it at start (MEDIA_S3_CREATE_BUCKET), so either suffices.
                "createBuckets": [{"name": bucket, "anonymousRead": False}],
            },
            "data": {"type": "persistentVolumeClaim", "size": f"{storage_gib}Gi"},
        },
    }
