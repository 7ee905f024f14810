"""Network: a VPC across the planned zones (infra/zones.py) with private, public and intra subnets.

Subnets are created by zone ID, in the CIDR slot of that ID, so the plan names physical zones and never moves.
Intra subnets (control-plane ENIs) leave out the zones EKS refuses. Nothing here carries a resource hook: a
subnet replaced during `pulumi up` must never trigger the teardown cleanup.

One NAT gateway (the original's cost choice: a NAT per AZ costs ~$32/month each) and an S3 gateway endpoint so
multi-GB image layers from ECR (served from S3) bypass the NAT's data charges and bandwidth limit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.zones import MAX_ZONES, Zone, ZonePlan

MAX_AZS = MAX_ZONES
DISCOVERY_TAG = "karpenter.sh/discovery"
# ECR's interface endpoints (ecrInterfaceEndpoints): the API (auth tokens, manifests) and the Docker registry API.
ECR_INTERFACE_SERVICES = ("ecr.api", "ecr.dkr")


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs per subnet tier, one per slot (a zone's slot is the number of its zone ID, from 0)."""

    private: tuple[str, ...]
    public: tuple[str, ...]
    intra: tuple[str, ...]


def plan_subnets(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Private /20s fill the first half of the /16; public /24s the third quarter; intra /24s the fourth.
    `az_count` slots per tier; the network asks for all of them and uses the slots of its zones."""
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
    zones: ZonePlan
    ecr_interface_endpoints: bool = False
    """Interface endpoints ecr.api and ecr.dkr (ecrInterfaceEndpoints): ECR API calls skip the NAT too."""


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet and NAT gateways, route tables and the S3 gateway endpoint."""

    vpc_id: pulumi.Output[str]
    zones: ZonePlan
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    intra_subnet_ids: list[pulumi.Output[str]]
    nat_route: aws.ec2.Route
    """Default route of the private subnets through the NAT gateway: nodes need it to reach ECR and join."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:Network", name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self)

        self.zones = args.zones
        plan = plan_subnets(args.vpc_cidr, MAX_AZS)

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

        zones = args.zones.zones
        public_ids = self._subnets(name, vpc, "public", zones, plan.public, {"kubernetes.io/role/elb": "1"})
        private_ids = self._subnets(
            name,
            vpc,
            "private",
            zones,
            plan.private,
            {"kubernetes.io/role/internal-elb": "1", DISCOVERY_TAG: args.cluster_name},
        )
        intra_ids = self._subnets(name, vpc, "intra", args.zones.control_plane, plan.intra, {})

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=self._tags("igw"), opts=child)
        public_rt = self._route_table(name, vpc, "public", zones, public_ids)
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
        private_rt = self._route_table(name, vpc, "private", zones, private_ids)
        self.nat_route = aws.ec2.Route(
            f"{name}-private-nat",
            route_table_id=private_rt.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=child,
        )
        self._route_table(
            name, vpc, "intra", args.zones.control_plane, intra_ids
        )  # no route out: control-plane ENIs only

        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[private_rt.id],
            tags=self._tags("s3"),
            opts=child,
        )
        if args.ecr_interface_endpoints:
            self._ecr_endpoints(name, vpc, private_ids)

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

    def _ecr_endpoints(self, name: str, vpc: aws.ec2.Vpc, subnet_ids: list[pulumi.Output[str]]) -> None:
        """ECR's API and registry endpoints in the private subnets, with private DNS: nodes resolve the usual ECR
        names to them. Layers still come from S3, through the gateway endpoint above."""
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{name}-ecr-endpoints",
            vpc_id=vpc.id,
            description="HTTPS from the VPC to the ECR interface endpoints",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [self._args.vpc_cidr]}],
            egress=[],  # endpoints only answer; replies need no egress rule
            tags=self._tags("ecr-endpoints"),
            opts=child,
        )
        for service in ECR_INTERFACE_SERVICES:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{self._args.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=subnet_ids,
                security_group_ids=[group.id],
                tags=self._tags(service),
                opts=child,
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
        zones: tuple[Zone, ...],
        slots: tuple[str, ...],
        tags: dict,
    ) -> list[pulumi.Output[str]]:
        ids = []
        for zone in zones:
            subnet = aws.ec2.Subnet(
                f"{name}-{tier}-{zone.id}",
                vpc_id=vpc.id,
                cidr_block=slots[zone.slot],
                availability_zone_id=zone.id,
                tags=pulumi.Output.all(self._tags(f"{tier}-{zone.id}"), tags).apply(lambda t: {**t[0], **t[1]}),
                opts=pulumi.ResourceOptions(parent=self),
            )
            ids.append(subnet.id)
        return ids

    def _route_table(
        self,
        name: str,
        vpc: aws.ec2.Vpc,
        tier: str,
        zones: tuple[Zone, ...],
        subnet_ids: list[pulumi.Output[str]],
    ) -> aws.ec2.RouteTable:
        table = aws.ec2.RouteTable(
            f"{name}-{tier}-rt", vpc_id=vpc.id, tags=self._tags(tier), opts=pulumi.ResourceOptions(parent=self)
        )
        for zone, subnet_id in zip(zones, subnet_ids, strict=True):
            aws.ec2.RouteTableAssociation(
                f"{name}-{tier}-{zone.id}",
                route_table_id=table.id,
                subnet_id=subnet_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
        return table
