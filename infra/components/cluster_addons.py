"""What an EKS cluster needs beyond its add-ons: the cluster autoscaler and the AWS Load Balancer Controller.

Decisions:
- The cluster autoscaler (chart pinned per Kubernetes minor, `infra.versions.CLUSTER_AUTOSCALER`)
  finds the node groups by the tags EKS puts on their Auto Scaling groups
  (`k8s.io/cluster-autoscaler/enabled`, `k8s.io/cluster-autoscaler/<cluster>`), and builds an empty
  pool's nodes from the node-template tags `infra.components.gpu_pools` adds, so a pool at zero nodes
  grows when a model server is Pending. It may only resize and terminate instances of this cluster's
  groups (IAM condition on the ownership tag).
- One controller for LoadBalancer Services: the AWS Load Balancer Controller. `nlb_annotations()` are
  the only load balancer annotations the program writes (an NLB with IP targets, TLS from ACM on 443,
  client addresses preserved); `aws-load-balancer-type: external` hands the Service to this
  controller, which the in-tree provider then ignores. Its Service mutating webhook is off: with
  `failurePolicy: Fail` it would block every Service in the cluster while the controller is down.
- Both get their AWS credentials through EKS Pod Identity (a role per controller, associated with its
  service account) and run on the system pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import helm, iam
from infra.components.cluster import EksHandles
from infra.versions import CHARTS, CLUSTER_AUTOSCALER

NAMESPACE = "kube-system"
AUTOSCALER_ACCOUNT = "cluster-autoscaler"
LB_CONTROLLER_ACCOUNT = "aws-load-balancer-controller"
SYSTEM_POOL = {"jan.ai/pool": "system"}
_LB = "service.beta.kubernetes.io/aws-load-balancer"


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    cluster: EksHandles
    region: str
    vpc_id: pulumi.Input[str]


class ClusterAddons(pulumi.ComponentResource):
    """The cluster autoscaler and the AWS Load Balancer Controller, each with its Pod Identity role."""

    load_balancer_controller: k8s.helm.v3.Release
    autoscaler: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("jan:platform:ClusterAddons", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        on_cluster = pulumi.ResourceOptions(parent=self)
        cluster_name = args.cluster.name
        autoscaler_identity = _pod_identity(
            f"{name}-autoscaler",
            args.cluster,
            AUTOSCALER_ACCOUNT,
            cluster_name.apply(autoscaler_policy),
            child,
        )
        self.autoscaler = helm.upstream_release(
            "cluster-autoscaler",
            CLUSTER_AUTOSCALER[args.cluster.version],
            namespace=NAMESPACE,
            values=autoscaler_values(cluster_name, args.region),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[autoscaler_identity])
            ),
        )
        controller_identity = _pod_identity(
            f"{name}-lb-controller",
            args.cluster,
            LB_CONTROLLER_ACCOUNT,
            cluster_name.apply(load_balancer_controller_policy),
            child,
        )
        self.load_balancer_controller = helm.upstream_release(
            "aws-load-balancer-controller",
            CHARTS["aws-load-balancer-controller"],
            namespace=NAMESPACE,
            values=load_balancer_controller_values(cluster_name, args.region, args.vpc_id),
            opts=pulumi.ResourceOptions.merge(
                on_cluster, pulumi.ResourceOptions(depends_on=[controller_identity])
            ),
        )
        self.register_outputs({})


def _pod_identity(
    name: str, cluster: EksHandles, account: str, policy: pulumi.Input[str], child: pulumi.ResourceOptions
) -> aws.eks.PodIdentityAssociation:
    role = aws.iam.Role(name, assume_role_policy=iam.trust(iam.POD_IDENTITY_SERVICE), opts=child)
    aws.iam.RolePolicy(name, role=role.id, policy=policy, opts=child)
    return aws.eks.PodIdentityAssociation(
        name,
        cluster_name=cluster.name,
        namespace=NAMESPACE,
        service_account=account,
        role_arn=role.arn,
        opts=child,
    )


def nlb_annotations(certificate_arn: pulumi.Input[str]) -> dict[str, Any]:
    """An internet-facing NLB by the AWS Load Balancer Controller, TLS ending on it with ACM."""
    return {
        f"{_LB}-type": "external",
        f"{_LB}-nlb-target-type": "ip",
        f"{_LB}-scheme": "internet-facing",
        f"{_LB}-ssl-cert": certificate_arn,
        f"{_LB}-ssl-ports": "443",
        f"{_LB}-backend-protocol": "tcp",
        f"{_LB}-target-group-attributes": "preserve_client_ip.enabled=true",
    }


def autoscaler_values(cluster_name: pulumi.Input[str], region: str) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "fullnameOverride": AUTOSCALER_ACCOUNT,
        "rbac": {"serviceAccount": {"create": True, "name": AUTOSCALER_ACCOUNT}},
        "nodeSelector": SYSTEM_POOL,
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            # DaemonSet pods (node exporter, device plugin) must not keep an idle GPU node alive.
            "skip-nodes-with-system-pods": False,
        },
    }


def load_balancer_controller_values(
    cluster_name: pulumi.Input[str], region: str, vpc_id: pulumi.Input[str]
) -> dict[str, Any]:
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        "replicaCount": 2,
        "serviceAccount": {"create": True, "name": LB_CONTROLLER_ACCOUNT},
        "enableServiceMutatorWebhook": False,
        "createIngressClassResource": False,
        "nodeSelector": SYSTEM_POOL,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    }


def autoscaler_policy(cluster_name: str) -> str:
    return iam.document(
        [
            {
                "Effect": "Allow",
                "Action": [
                    "autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements",
                    "eks:DescribeNodegroup",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}
                },
            },
        ]
    )


def load_balancer_controller_policy(cluster_name: str) -> str:
    """What the controller needs for NLB Services: read the VPC, manage its own LBs and groups."""
    owned = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    return iam.document(
        [
            {
                "Effect": "Allow",
                "Action": ["iam:CreateServiceLinkedRole"],
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:Describe*",
                    "ec2:GetSecurityGroupsForVpc",
                    "elasticloadbalancing:Describe*",
                    "acm:DescribeCertificate",
                    "acm:ListCertificates",
                ],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:CreateSecurityGroup",
                    "elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:RequestTag/elbv2.k8s.aws/cluster": cluster_name}},
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": "arn:aws:ec2:*:*:security-group/*",
                "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}},
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                    "ec2:CreateTags",
                    "ec2:DeleteTags",
                    "elasticloadbalancing:AddTags",
                    "elasticloadbalancing:RemoveTags",
                    "elasticloadbalancing:ModifyLoadBalancerAttributes",
                    "elasticloadbalancing:SetIpAddressType",
                    "elasticloadbalancing:SetSecurityGroups",
                    "elasticloadbalancing:SetSubnets",
                    "elasticloadbalancing:DeleteLoadBalancer",
                    "elasticloadbalancing:ModifyTargetGroup",
                    "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:DeleteTargetGroup",
                    "elasticloadbalancing:RegisterTargets",
                    "elasticloadbalancing:DeregisterTargets",
                ],
                "Resource": "*",
                "Condition": owned,
            },
            {
                # Listeners carry no tags of their own: they are reached through the owned load balancer.
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:ModifyListener",
                    "elasticloadbalancing:ModifyListenerAttributes",
                ],
                "Resource": "*",
            },
        ]
    )
