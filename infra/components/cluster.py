"""The Kubernetes cluster: a new EKS cluster, or an existing one from the kubeconfig; plus its provider.

Decisions:
- Plain pulumi-aws resources rather than pulumi-eks: pulumi-eks is a remote component, which stays a
  black box under the mock engine the tests and the offline render use.
- Authentication mode `API` (access entries; no aws-auth ConfigMap to lose on a cluster replacement);
  the identity running `pulumi up` and `adminArns` get cluster-admin entries, one per principal (EKS's
  own creator entry is off: it would collide with an `adminArns` entry naming the deployer).
- Secrets are envelope-encrypted with a KMS key the stack owns.
- Add-ons: vpc-cni (with its network policy agent: `enableNetworkPolicy`), kube-proxy and the Pod
  Identity agent before the nodes (pods get VPC networking from the first node on); coredns,
  metrics-server (resource metrics for the apps' HPAs) and the EBS CSI driver after (they need nodes to
  become active). The EBS CSI controller gets its IAM role through Pod Identity.
- The Kubernetes provider depends on the system node group, CoreDNS and the admins' access policies,
  so nothing deployed through it (every namespace, release and object) starts before there are nodes
  to run it, DNS to resolve and access for the deployer.
- Every component deploys to Kubernetes through the provider built here, never the ambient kubeconfig.
  On EKS its kubeconfig holds no credential (tokens come from `aws eks get-token`).
- The apps namespace lives here because both modes need it before anything else deploys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.cluster_config import ClusterConfig, ClusterMode
from infra.naming import Naming

APPS_NAMESPACE = "jan"
# Add-ons before the nodes, with their configuration. NetworkPolicies are inert on EKS unless the VPC
# CNI runs its network policy agent.
EARLY_ADDONS: dict[str, dict[str, Any] | None] = {
    "vpc-cni": {"enableNetworkPolicy": "true"},
    "kube-proxy": None,
    "eks-pod-identity-agent": None,
}
_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
_NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy")


@dataclass(frozen=True, kw_only=True)
class ClusterArgs:
    naming: Naming
    spec: ClusterConfig
    region: str | None = None
    private_subnet_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    public_subnet_ids: Sequence[pulumi.Input[str]] = field(default_factory=list)
    control_plane_logs: bool = False


@dataclass(frozen=True, slots=True)
class EksHandles:
    """What node pools, the database and Pod Identity need from an EKS cluster."""

    name: pulumi.Output[str]
    version: str
    node_role_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    private_subnet_ids: Sequence[pulumi.Input[str]]


class Cluster(pulumi.ComponentResource):
    """EKS (or an existing cluster), the Kubernetes provider for it, and the apps namespace."""

    provider: k8s.Provider
    apps_namespace: pulumi.Output[str]
    eks: EksHandles | None

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if args.spec.mode is ClusterMode.EKS:
            self.eks, self.provider = _build_eks(name, args, child)
        else:
            self.eks = None
            self.provider = k8s.Provider(
                f"{name}-k8s", context=args.spec.context, kubeconfig=args.spec.kubeconfig, opts=child
            )
        namespace = k8s.core.v1.Namespace(
            f"{name}-apps",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=APPS_NAMESPACE,
                labels={
                    **args.naming.labels("apps"),
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        self.apps_namespace = namespace.metadata.apply(lambda meta: str(meta.name))
        self.register_outputs({"apps_namespace": self.apps_namespace})


def _build_eks(
    name: str, args: ClusterArgs, child: pulumi.ResourceOptions
) -> tuple[EksHandles, k8s.Provider]:
    cluster_role, node_role = _roles(name, child)
    cluster = _control_plane(name, args, cluster_role, child)
    admins = _admin_entries(name, cluster, admin_principals(args.spec.admin_arns, _deployer(child)), child)
    early = [_addon(name, cluster, addon, child, configuration=EARLY_ADDONS[addon]) for addon in EARLY_ADDONS]
    system = _system_nodes(
        name,
        args,
        cluster,
        node_role,
        pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=early)),
    )
    after_nodes = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[system]))
    coredns = _addon(name, cluster, "coredns", after_nodes)
    _addon(name, cluster, "metrics-server", after_nodes)
    csi = _ebs_csi_driver(name, cluster, after_nodes)
    # Everything deployed through this provider waits for it, so for the system nodes, CoreDNS and the
    # deployer's cluster-admin access.
    provider = k8s.Provider(
        f"{name}-k8s",
        kubeconfig=pulumi.Output.all(
            cluster.name, cluster.endpoint, cluster.certificate_authority.data
        ).apply(lambda parts: kubeconfig(parts[0], parts[1], parts[2], args.region or "")),
        opts=pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=[system, coredns, *admins])
        ),
    )
    _default_storage_class(
        name, args.naming, pulumi.ResourceOptions(parent=child.parent, provider=provider, depends_on=[csi])
    )
    handles = EksHandles(
        name=cluster.name,
        version=args.spec.kubernetes_version,
        node_role_arn=node_role.arn,
        security_group_id=cluster.vpc_config.apply(lambda vpc: vpc.cluster_security_group_id or ""),
        private_subnet_ids=args.private_subnet_ids,
    )
    return handles, provider


def _roles(name: str, child: pulumi.ResourceOptions) -> tuple[aws.iam.Role, aws.iam.Role]:
    cluster_role = aws.iam.Role(
        f"{name}-control-plane", assume_role_policy=iam.trust("eks.amazonaws.com"), opts=child
    )
    aws.iam.RolePolicyAttachment(
        f"{name}-control-plane",
        role=cluster_role.name,
        policy_arn=iam.managed("AmazonEKSClusterPolicy"),
        opts=child,
    )
    node_role = aws.iam.Role(f"{name}-nodes", assume_role_policy=iam.trust("ec2.amazonaws.com"), opts=child)
    for policy in _NODE_POLICIES:
        aws.iam.RolePolicyAttachment(
            f"{name}-nodes-{policy}", role=node_role.name, policy_arn=iam.managed(policy), opts=child
        )
    return cluster_role, node_role


def _control_plane(
    name: str, args: ClusterArgs, role: aws.iam.Role, child: pulumi.ResourceOptions
) -> aws.eks.Cluster:
    naming = args.naming
    secrets_key = aws.kms.Key(
        f"{name}-secrets",
        description=f"{naming('eks')} Kubernetes secrets envelope encryption",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        opts=child,
    )
    aws.iam.RolePolicy(
        f"{name}-secrets",
        role=role.id,
        policy=secrets_key.arn.apply(
            lambda arn: iam.document(
                [
                    {
                        "Effect": "Allow",
                        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                        "Resource": arn,
                    }
                ]
            )
        ),
        opts=child,
    )
    return aws.eks.Cluster(
        f"{name}-eks",
        name=naming("eks"),
        version=args.spec.kubernetes_version,
        role_arn=role.arn,
        vpc_config=aws.eks.ClusterVpcConfigArgs(
            subnet_ids=[*args.private_subnet_ids, *args.public_subnet_ids],
            endpoint_private_access=True,
            endpoint_public_access=True,
            public_access_cidrs=[str(cidr) for cidr in args.spec.public_access_cidrs],
        ),
        # The deployer gets its entry from `_admin_entries` like every admin: EKS's own creator entry
        # would collide with an `adminArns` entry for the same principal.
        access_config=aws.eks.ClusterAccessConfigArgs(
            authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False
        ),
        encryption_config=aws.eks.ClusterEncryptionConfigArgs(
            resources=["secrets"],
            provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=secrets_key.arn),
        ),
        enabled_cluster_log_types=["api", "audit", "authenticator"] if args.control_plane_logs else [],
        tags=naming.tags("eks"),
        opts=child,
    )


def _deployer(child: pulumi.ResourceOptions) -> str:
    """The IAM principal running `pulumi up` (a role's ARN, not its STS session's)."""
    invoke = pulumi.InvokeOptions(parent=child.parent)
    caller = aws.get_caller_identity(opts=invoke)
    return str(aws.iam.get_session_context(arn=caller.arn, opts=invoke).issuer_arn)


def admin_principals(arns: Sequence[str], deployer: str) -> list[str]:
    """The deployer first, then `adminArns`, each principal once."""
    return list(dict.fromkeys([deployer, *arns]))


def _admin_entries(
    name: str, cluster: aws.eks.Cluster, arns: Sequence[str], child: pulumi.ResourceOptions
) -> list[aws.eks.AccessPolicyAssociation]:
    associations = []
    for index, arn in enumerate(arns):
        entry = aws.eks.AccessEntry(
            f"{name}-admin-{index}", cluster_name=cluster.name, principal_arn=arn, type="STANDARD", opts=child
        )
        associations.append(
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{index}",
                cluster_name=cluster.name,
                principal_arn=arn,
                policy_arn=_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[entry])),
            )
        )
    return associations


def _system_nodes(
    name: str, args: ClusterArgs, cluster: aws.eks.Cluster, role: aws.iam.Role, opts: pulumi.ResourceOptions
) -> aws.eks.NodeGroup:
    nodes = args.spec.system_nodes
    return aws.eks.NodeGroup(
        f"{name}-system",
        cluster_name=cluster.name,
        version=cluster.version,  # nodes follow the control plane when kubernetesVersion changes
        node_role_arn=role.arn,
        subnet_ids=list(args.private_subnet_ids),
        ami_type="AL2023_x86_64_STANDARD",
        capacity_type="ON_DEMAND",
        instance_types=nodes.instance_types,
        disk_size=nodes.disk_gib,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=nodes.scaling.min_size,
            desired_size=nodes.scaling.desired_size,
            max_size=nodes.scaling.max_size,
        ),
        update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        labels={"jan.ai/pool": "system"},
        tags=args.naming.tags("system"),
        # The cluster autoscaler owns the desired size once the group exists.
        opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])
        ),
    )


def _ebs_csi_driver(name: str, cluster: aws.eks.Cluster, opts: pulumi.ResourceOptions) -> aws.eks.Addon:
    role = aws.iam.Role(
        f"{name}-ebs-csi",
        assume_role_policy=iam.trust(iam.POD_IDENTITY_SERVICE),
        opts=pulumi.ResourceOptions(parent=opts.parent),
    )
    aws.iam.RolePolicyAttachment(
        f"{name}-ebs-csi",
        role=role.name,
        policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
        opts=pulumi.ResourceOptions(parent=opts.parent),
    )
    association = aws.eks.AddonPodIdentityAssociationArgs(
        role_arn=role.arn, service_account="ebs-csi-controller-sa"
    )
    return _addon(name, cluster, "aws-ebs-csi-driver", opts, pod_identity=[association])


def _default_storage_class(name: str, naming: Naming, opts: pulumi.ResourceOptions) -> None:
    k8s.storage.v1.StorageClass(
        f"{name}-gp3",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name="gp3",
            labels=naming.labels("storage"),
            annotations={"storageclass.kubernetes.io/is-default-class": "true"},
        ),
        provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
        volume_binding_mode="WaitForFirstConsumer",
        allow_volume_expansion=True,
        reclaim_policy="Delete",
        opts=opts,
    )


def _addon(
    name: str,
    cluster: aws.eks.Cluster,
    addon: str,
    opts: pulumi.ResourceOptions,
    pod_identity: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None,
    configuration: dict[str, Any] | None = None,
) -> aws.eks.Addon:
    return aws.eks.Addon(
        f"{name}-{addon}",
        cluster_name=cluster.name,
        addon_name=addon,
        configuration_values=json.dumps(configuration, sort_keys=True) if configuration else None,
        resolve_conflicts_on_create="OVERWRITE",
        resolve_conflicts_on_update="OVERWRITE",
        pod_identity_associations=pod_identity,
        opts=opts,
    )


def kubeconfig(cluster_name: str, endpoint: str, certificate_authority: str, region: str) -> str:
    """A kubeconfig without credentials: kubectl and the provider fetch tokens with the AWS CLI."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": [
                "eks",
                "get-token",
                "--cluster-name",
                cluster_name,
                "--region",
                region,
                "--output",
                "json",
            ],
        }
    }
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster_name,
                    "cluster": {"server": endpoint, "certificate-authority-data": certificate_authority},
                }
            ],
            "users": [{"name": cluster_name, "user": user}],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
        },
        sort_keys=True,
    )
