"""The VPC of an EKS stack: public and private subnets over 2-3 AZs, NAT, and flow logs in prod.

Decisions:
- AZs come from `aws.get_availability_zones` at deploy time, so a stack file names no AZs and moves
  between regions unchanged; the count is config.
- Subnet CIDRs are carved from the VPC CIDR: each private subnet gets a quarter (nodes and pods take
  VPC IPs with the VPC CNI), the public subnets share the last quarter (load balancers and NAT only).
- One NAT gateway outside prod (cost), one per AZ in prod (an AZ outage does not cut egress).
- Subnets carry the tags the AWS load balancer integrations look for (`kubernetes.io/role/elb` on
  public, `kubernetes.io/role/internal-elb` on private) and the cluster ownership tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.naming import Naming

_FLOW_LOG_RETENTION_DAYS = 90


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    naming: Naming
    cidr: IPv4Network
    availability_zones: int
    cluster_name: str
    nat_per_az: bool
    flow_logs: bool


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes, NAT; outputs the ids the cluster and the database need."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    zones: list[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("jan:platform:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        if len(zones) < args.availability_zones:
            raise ValueError(f"the region has {len(zones)} AZs, network.availabilityZones asks for more")
        self.zones = sorted(zones)[: args.availability_zones]
        private_cidrs, public_cidrs = subnet_cidrs(args.cidr, len(self.zones))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(args.cidr),
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=args.naming.tags("vpc"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags=args.naming.tags("igw"), opts=child
        )
        public = self._subnets(f"{name}-public", args, vpc, public_cidrs, "kubernetes.io/role/elb", child)
        private = self._subnets(
            f"{name}-private", args, vpc, private_cidrs, "kubernetes.io/role/internal-elb", child
        )
        self._public_routes(name, args, vpc, gateway, public, child)
        self._private_routes(name, args, vpc, public, private, child)
        if args.flow_logs:
            self._flow_logs(name, args, vpc, child)
        self.vpc_id = vpc.id
        self.public_subnet_ids = [subnet.id for subnet in public]
        self.private_subnet_ids = [subnet.id for subnet in private]
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids})

    def _subnets(
        self,
        prefix: str,
        args: NetworkArgs,
        vpc: aws.ec2.Vpc,
        cidrs: list[IPv4Network],
        load_balancer_role: str,
        child: pulumi.ResourceOptions,
    ) -> list[aws.ec2.Subnet]:
        """One subnet per AZ, tagged for the load balancers that may use it and for the cluster."""
        tier = prefix.rsplit("-", 1)[-1]
        tags = {load_balancer_role: "1", f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        return [
            aws.ec2.Subnet(
                f"{prefix}-{zone}",
                vpc_id=vpc.id,
                cidr_block=str(cidr),
                availability_zone=zone,
                tags=args.naming.tags(tier, zone, **tags),
                opts=child,
            )
            for zone, cidr in zip(self.zones, cidrs, strict=True)
        ]

    @staticmethod
    def _public_routes(
        name: str,
        args: NetworkArgs,
        vpc: aws.ec2.Vpc,
        gateway: aws.ec2.InternetGateway,
        public: list[aws.ec2.Subnet],
        child: pulumi.ResourceOptions,
    ) -> None:
        table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=gateway.id)],
            tags=args.naming.tags("public"),
            opts=child,
        )
        for index, subnet in enumerate(public):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )

    @staticmethod
    def _private_routes(
        name: str,
        args: NetworkArgs,
        vpc: aws.ec2.Vpc,
        public: list[aws.ec2.Subnet],
        private: list[aws.ec2.Subnet],
        child: pulumi.ResourceOptions,
    ) -> None:
        nat_subnets = public if args.nat_per_az else public[:1]
        nats = []
        for index, subnet in enumerate(nat_subnets):
            address = aws.ec2.Eip(
                f"{name}-nat-{index}", domain="vpc", tags=args.naming.tags("nat"), opts=child
            )
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    subnet_id=subnet.id,
                    allocation_id=address.id,
                    tags=args.naming.tags("nat"),
                    opts=child,
                )
            )
        for index, subnet in enumerate(private):
            nat = nats[index % len(nats)]
            table = aws.ec2.RouteTable(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat.id)],
                tags=args.naming.tags("private-rt"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}", subnet_id=subnet.id, route_table_id=table.id, opts=child
            )

    @staticmethod
    def _flow_logs(name: str, args: NetworkArgs, vpc: aws.ec2.Vpc, child: pulumi.ResourceOptions) -> None:
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", retention_in_days=_FLOW_LOG_RETENTION_DAYS, opts=child
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=iam.trust("vpc-flow-logs.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: iam.document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": f"{arn}:*",
                        }
                    ]
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            tags=args.naming.tags("flow-logs"),
            opts=child,
        )


def subnet_cidrs(cidr: IPv4Network, zones: int) -> tuple[list[IPv4Network], list[IPv4Network]]:
    """Private subnets: a quarter of the VPC each; public: sixteenths of the last quarter."""
    quarters = list(cidr.subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return quarters[:zones], public[:zones]
