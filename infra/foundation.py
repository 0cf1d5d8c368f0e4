"""What the platform program builds first and every later layer builds on: `Platform`.

A leaf of the program's layers (`program > release > services > foundation > components > specs`,
an import-linter contract): the services and the release take a `Platform` whole, and nothing here
imports them back. The foundation is the stack's config and names, the cluster (with its Kubernetes
provider), on AWS the AWS provider, GPU pools and cluster add-ons, and the data endpoints (RDS and S3
from `program.build`, or the in-cluster ones `program.with_in_cluster_data` adds).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.components.cluster import Cluster
from infra.components.cluster_addons import ClusterAddons
from infra.components.gpu_pools import GpuNodePools
from infra.config import StackConfig
from infra.database import DatabaseEndpoint
from infra.naming import Naming
from infra.object_storage import ObjectStoreEndpoint


class MissingPhase(RuntimeError):
    """A layer was built before the phase it needs (a programming error in `infra.program`)."""


@dataclass(frozen=True, slots=True)
class Platform:
    """What later components build on."""

    config: StackConfig
    naming: Naming
    cluster: Cluster
    database: DatabaseEndpoint | None
    object_store: ObjectStoreEndpoint | None
    image_repository: str
    aws_provider: aws.Provider | None = None
    gpu_pools: GpuNodePools | None = None
    addons: ClusterAddons | None = None

    def on_cluster(self) -> pulumi.ResourceOptions:
        """Options for a component that deploys to the cluster: the Kubernetes provider travels in
        `opts` (Pulumi's convention; its children inherit it), as the AWS provider does."""
        return pulumi.ResourceOptions(providers=[self.cluster.provider])

    def data(self) -> tuple[DatabaseEndpoint, ObjectStoreEndpoint]:
        """The database and the object store, which exist once the data phase ran."""
        if self.database is None or self.object_store is None:
            missing = [
                name
                for name, value in (("database", self.database), ("object store", self.object_store))
                if value is None
            ]
            raise MissingPhase(
                f"the platform has no {' and no '.join(missing)} yet: build the data phase "
                "(`program.with_in_cluster_data`) before the services and the release"
            )
        return self.database, self.object_store
