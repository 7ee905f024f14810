"""Network: a VPC across every available AZ (at most 8) with private, public and intra subnets.

One NAT gateway (the original's cost choice: a NAT per AZ costs ~$32/month each) and an S3 gateway endpoint so
multi-GB image layers from ECR (served from S3) bypass the NAT's data charges and bandwidth limit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

MAX_AZS = 8
DISCOVERY_TAG = "karpenter.sh/discovery"


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs per subnet tier, one per AZ, in AZ order."""

    private: tuple[str, ...]
    public: tuple[str, ...]
    intra: tuple[str, ...]


def plan_subnets(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Private /20s fill the first half of the /16; public /24s the third quarter; intra /24s the fourth."""
    if not 1 <= az_count <= MAX_AZS:
        raise ValueError(f"az_count must be 1..{MAX_AZS}, got {az_count}")
    vpc = ipaddress.IPv4Network(vpc_cidr)
    first_half, second_half = vpc.subnets(prefixlen_diff=1)
    third_quarter, fourth_quarter = second_half.subnets(prefixlen_diff=1)

    def take(block: ipaddress.IPv4Network, prefix: int) -> tuple[str, ...]:
        return tuple(str(n) for _, n in zip(range(az_count), block.subnets(new_prefix=prefix), strict=False))

    return SubnetPlan(
        private=take(first_half, vpc.prefixlen + 4),
        public=take(third_quarter, vpc.prefixlen + 8),
        intra=take(fourth_quarter, vpc.prefixlen + 8),
    )


@dataclass(frozen=True)
class NetworkArgs:
    cluster_name: pulumi.Input[str]
    vpc_cidr: str
    region: str
    private_subnet_hook: pulumi.ResourceHook | None = None
    """Runs before each private subnet is deleted (see infra/destroy_hook.py)."""


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet and NAT gateways, route tables and the S3 gateway endpoint."""

    vpc_id: pulumi.Output[str]
    availability_zones: tuple[str, ...]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    intra_subnet_ids: list[pulumi.Output[str]]
    nat_route: aws.ec2.Route
    """Default route of the private subnets through the NAT gateway: nodes need it to reach ECR and join."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:Network", name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        zones = aws.get_availability_zones(
            state="available",
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            opts=pulumi.InvokeOptions(parent=self),
        )
        self.availability_zones = tuple(zones.names[:MAX_AZS])
        plan = plan_subnets(args.vpc_cidr, len(self.availability_zones))

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=self._tags("vpc"),
            opts=child,
        )
        self.vpc_id = vpc.id
        # Strip the default security group of its allow-all rules; nothing should use it (CIS AWS 5.4).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], opts=child)

        public_ids = self._subnets(name, vpc, "public", plan.public, {"kubernetes.io/role/elb": "1"})
        private_ids = self._subnets(
            name,
            vpc,
            "private",
            plan.private,
            {"kubernetes.io/role/internal-elb": "1", DISCOVERY_TAG: args.cluster_name},
            hook=args.private_subnet_hook,
        )
        intra_ids = self._subnets(name, vpc, "intra", plan.intra, {})

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._tags("igw"), opts=child)
        public_rt = self._route_table(name, vpc, "public", public_ids)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        eip = aws.ec2.Eip(f"{name}-nat-eip", domain="vpc", tags=self._tags("nat"), opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=eip.id,
            subnet_id=public_ids[0],
            tags=self._tags("nat"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
        )
        private_rt = self._route_table(name, vpc, "private", private_ids)
        self.nat_route = aws.ec2.Route(
            f"{name}-private-nat",
            route_table_id=private_rt.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=child,
        )
        self._route_table(name, vpc, "intra", intra_ids)  # no route out: control-plane ENIs only

        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_rt.id],
            tags=self._tags("s3"),
            opts=child,
        )

        self.private_subnet_ids = private_ids
        self.public_subnet_ids = public_ids
        self.intra_subnet_ids = intra_ids
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": private_ids,
                "public_subnet_ids": public_ids,
                "intra_subnet_ids": intra_ids,
            }
        )

    def _tags(self, role: str, extra: dict | None = None) -> pulumi.Output[dict[str, str]]:
        return pulumi.Output.from_input(self._args.cluster_name).apply(
            lambda cluster: {"Name": f"{cluster}-{role}", **(extra or {})}
        )

    def _subnets(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        tier: str,
        cidrs: tuple[str, ...],
        tags: dict,
        hook: pulumi.ResourceHook | None = None,
    ) -> list[pulumi.Output[str]]:
        hooks = pulumi.ResourceHookBinding(before_delete=[hook]) if hook else None
        ids = []
        for az, cidr in zip(self.availability_zones, cidrs, strict=True):
            subnet = aws.ec2.Subnet(
                f"{name}-{tier}-{az}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=az,
                tags=pulumi.Output.all(self._tags(f"{tier}-{az}"), tags).apply(lambda t: {**t[0], **t[1]}),
                opts=pulumi.ResourceOptions(parent=self, hooks=hooks),
            )
            ids.append(subnet.id)
        return ids

    def _route_table(
        self, name: str, vpc: aws.ec2.Vpc, tier: str, subnet_ids: list[pulumi.Output[str]]
    ) -> aws.ec2.RouteTable:
        table = aws.ec2.RouteTable(
            f"{name}-{tier}-rt", vpc_id=vpc.id, tags=self._tags(tier), opts=pulumi.ResourceOptions(parent=self)
        )
        for az, subnet_id in zip(self.availability_zones, subnet_ids, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-{az}",
                route_table_id=table.id,
                subnet_id=subnet_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return table
