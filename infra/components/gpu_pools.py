"""GPU node pools: one EKS managed node group per configured pool, plus the NVIDIA device plugin.

Decisions:
- NVIDIA AMIs (`AL2023_x86_64_NVIDIA` or `BOTTLEROCKET_x86_64_NVIDIA`) ship the driver and container
  toolkit; AL2023 lacks the device plugin, so it is deployed here (pinned in `infra/versions.py`) for
  the AL2023 pools only.
- Every GPU node is tainted `nvidia.com/gpu=true:NoSchedule`; only the device plugin (and, later, the
  model servers) tolerate it, so nothing else lands on expensive nodes.
- Pools are labelled `nvidia.com/gpu.present=true`: the device plugin's node affinity and our node
  selector match it without Node Feature Discovery. They are also labelled with their AMI family
  (`jan.ai/ami`): Bottlerocket's NVIDIA variants ship their own device plugin, so ours keeps off them.
- The cluster autoscaler owns the desired size after creation (`ignore_changes`), so a `pulumi up`
  never scales a pool back; the pool's Auto Scaling group carries the autoscaler's node-template tags
  (labels and taint), so a pool can scale up from zero nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import helm
from infra.capacity import smallest_of
from infra.cluster_config import GpuPool
from infra.components.cluster import EksHandles
from infra.instances import InstanceFacts, from_aws
from infra.naming import Naming
from infra.versions import NVIDIA_DEVICE_PLUGIN

GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
AMI_LABEL = "jan.ai/ami"  # `al2023` or `bottlerocket`: which node OS the pool runs
DEVICE_PLUGIN_NAMESPACE = "nvidia-device-plugin"
_AMI_TYPES = {"al2023": "AL2023_x86_64_NVIDIA", "bottlerocket": "BOTTLEROCKET_x86_64_NVIDIA"}
_CAPACITY = {"on-demand": "ON_DEMAND", "spot": "SPOT"}
_NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"

# What a pod needs to run on a GPU pool; the inference component reuses it.
GPU_TOLERATION: dict[str, str] = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True, kw_only=True)
class GpuNodePoolsArgs:
    naming: Naming
    cluster: EksHandles
    pools: Sequence[GpuPool]


class GpuNodePools(pulumi.ComponentResource):
    """Managed GPU node groups and the device plugin that advertises `nvidia.com/gpu`."""

    node_group_names: dict[str, pulumi.Output[str]]
    node_groups: dict[str, aws.eks.NodeGroup]
    pool_nodes: dict[str, InstanceFacts]
    """Per pool, its smallest instance type as AWS describes it (what model servers are sized from)."""

    def __init__(self, name: str, args: GpuNodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:GpuNodePools", name, None, opts)
        if not args.pools:
            raise ValueError("GpuNodePools needs at least one pool")
        child = pulumi.ResourceOptions(parent=self)
        self.node_group_names, self.node_groups, self.pool_nodes = {}, {}, {}
        for pool in args.pools:
            group = _node_group(f"{name}-{pool.name}", pool, args, child)
            _scale_from_zero_tags(f"{name}-{pool.name}", pool, group, child)
            self.node_group_names[pool.name] = group.node_group_name
            self.node_groups[pool.name] = group
            self.pool_nodes[pool.name] = smallest_of(
                [
                    from_aws(
                        aws.ec2.get_instance_type(instance_type=type_, opts=pulumi.InvokeOptions(parent=self))
                    )
                    for type_ in pool.instance_types
                ]
            )
        on_cluster = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(
            f"{name}-device-plugin",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DEVICE_PLUGIN_NAMESPACE,
                # The plugin mounts host paths: privileged is the honest level for this namespace.
                labels={**args.naming.labels("gpu"), "pod-security.kubernetes.io/enforce": "privileged"},
            ),
            opts=on_cluster,
        )
        helm.upstream_release(
            "nvidia-device-plugin",
            NVIDIA_DEVICE_PLUGIN,
            namespace=DEVICE_PLUGIN_NAMESPACE,
            values=device_plugin_values(),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[namespace, *self.node_groups.values()])
            ),
        )
        self.register_outputs({"node_group_names": self.node_group_names})


def _node_group(
    name: str, pool: GpuPool, args: GpuNodePoolsArgs, child: pulumi.ResourceOptions
) -> aws.eks.NodeGroup:
    return aws.eks.NodeGroup(
        name,
        cluster_name=args.cluster.name,
        version=args.cluster.version,
        node_role_arn=args.cluster.node_role_arn,
        subnet_ids=list(args.cluster.private_subnet_ids),
        ami_type=_AMI_TYPES[pool.ami],
        capacity_type=_CAPACITY[pool.capacity],
        instance_types=pool.instance_types,
        disk_size=pool.disk_gib,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=pool.scaling.min_size,
            desired_size=pool.scaling.desired_size,
            max_size=pool.scaling.max_size,
        ),
        labels=node_labels(pool),
        taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="true", effect="NO_SCHEDULE")],
        update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        tags=args.naming.tags("gpu", pool.name),
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])
        ),
    )


def _scale_from_zero_tags(
    name: str, pool: GpuPool, group: aws.eks.NodeGroup, child: pulumi.ResourceOptions
) -> None:
    """Tell the cluster autoscaler what an empty pool's nodes would look like (labels and taint)."""
    asg_name = group.resources.apply(_auto_scaling_group)
    for key, value in autoscaler_node_template(pool).items():
        aws.autoscaling.Tag(
            f"{name}-{key.removeprefix(_NODE_TEMPLATE + '/').replace('/', '-')}",
            autoscaling_group_name=asg_name,
            tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
            opts=child,
        )


def _auto_scaling_group(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    """A managed node group has exactly one Auto Scaling group once it exists."""
    (group,) = resources[0].autoscaling_groups or []
    return str(group.name)


def autoscaler_node_template(pool: GpuPool) -> dict[str, str]:
    tags = {f"{_NODE_TEMPLATE}/label/{key}": value for key, value in node_labels(pool).items()}
    tags[f"{_NODE_TEMPLATE}/taint/{GPU_TAINT_KEY}"] = "true:NoSchedule"
    return tags


def node_labels(pool: GpuPool) -> dict[str, str]:
    return {**pool.labels, "jan.ai/pool": pool.name, AMI_LABEL: pool.ami, GPU_PRESENT_LABEL: "true"}


def device_plugin_values() -> dict[str, Any]:
    """Only our taint is tolerated, and only GPU nodes whose AMI lacks the plugin are selected:
    Bottlerocket's NVIDIA variants run their own device plugin, and a second one would fight it."""
    required = [
        {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]},
        {"key": AMI_LABEL, "operator": "NotIn", "values": ["bottlerocket"]},
    ]
    return {
        "tolerations": [GPU_TOLERATION],
        # Replaces the chart's default affinity (NFD labels), whose terms would each admit any GPU node.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": required}]
                }
            }
        },
        "gfd": {"enabled": False},
        "nfd": {"enabled": False},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
