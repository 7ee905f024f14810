"""Network component: subnet plan, AZ coverage, tags, NAT, S3 endpoint."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from infra.network import plan_subnets

SUBNET = "aws:ec2/subnet:Subnet"


def subnets(run, tier):
    return [r for r in run.of_type(SUBNET) if r.name.startswith(f"network-{tier}-")]


@pytest.mark.parametrize(
    ("region", "azs", "control_plane_azs"), [("us-west-2", 4, 4), ("us-east-1", 6, 5), ("ap-northeast-1", 3, 3)]
)
def test_a_subnet_per_tier_and_zone(render, region, azs, control_plane_azs):
    run = render(**{"aws:region": region})
    assert len(run.of_type(SUBNET)) == 2 * azs + control_plane_azs
    prefix = {"us-west-2": "usw2-az", "us-east-1": "use1-az", "ap-northeast-1": "apne1-az"}[region]
    for tier, count in (("private", azs), ("public", azs), ("intra", control_plane_azs)):
        zones = [r.inputs["availabilityZoneId"] for r in subnets(run, tier)]
        assert len(zones) == count and len(set(zones)) == count and all(z.startswith(prefix) for z in zones)


def test_planned_cidrs_for_the_default_vpc(stack):
    plan = {
        tier: sorted(r.inputs["cidrBlock"] for r in subnets(stack, tier)) for tier in ("private", "public", "intra")
    }
    assert plan["private"] == ["10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20", "10.0.48.0/20"]
    assert plan["public"] == ["10.0.128.0/24", "10.0.129.0/24", "10.0.130.0/24", "10.0.131.0/24"]
    assert plan["intra"] == ["10.0.192.0/24", "10.0.193.0/24", "10.0.194.0/24", "10.0.195.0/24"]


@pytest.mark.parametrize("vpc", ["10.0.0.0/16", "172.20.0.0/16", "192.168.0.0/16"])
def test_plan_for_eight_azs_fits_in_any_16_without_overlap(vpc):
    plan = plan_subnets(vpc, 8)
    network = ipaddress.IPv4Network(vpc)
    blocks = [ipaddress.IPv4Network(c) for c in (*plan.private, *plan.public, *plan.intra)]
    assert len(blocks) == 24
    assert all(b.subnet_of(network) for b in blocks)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(blocks, 2))
    half = list(network.subnets(prefixlen_diff=1))
    assert all(ipaddress.IPv4Network(c).subnet_of(half[0]) and c.endswith("/20") for c in plan.private)
    assert all(ipaddress.IPv4Network(c).subnet_of(half[1]) and c.endswith("/24") for c in plan.public + plan.intra)


def test_other_vpc_cidr_is_followed(render):
    run = render(vpcCidr="172.20.0.0/16")
    assert run.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"] == "172.20.0.0/16"
    assert sorted(r.inputs["cidrBlock"] for r in subnets(run, "intra"))[0] == "172.20.192.0/24"


def test_vpc_has_dns_support_and_hostnames(stack):
    vpc = stack.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["enableDnsSupport"] is True and vpc["enableDnsHostnames"] is True


def test_subnet_tags(stack):
    cluster = stack.outputs["cluster_name"]
    for s in subnets(stack, "public"):
        assert s.inputs["tags"]["kubernetes.io/role/elb"] == "1"
        assert "karpenter.sh/discovery" not in s.inputs["tags"]
    for s in subnets(stack, "private"):
        assert s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert s.inputs["tags"]["karpenter.sh/discovery"] == cluster
    for s in subnets(stack, "intra"):
        assert not {"kubernetes.io/role/elb", "kubernetes.io/role/internal-elb"} & set(s.inputs["tags"])


def test_one_nat_gateway_in_the_first_public_subnet(stack):
    nat = stack.one("aws:ec2/natGateway:NatGateway")
    first_public = min(subnets(stack, "public"), key=lambda r: r.inputs["cidrBlock"])
    assert len(stack.of_type("aws:ec2/eip:Eip")) == 1
    assert first_public.urn in nat.dependencies


def test_private_default_route_goes_through_the_nat_and_public_through_the_igw(stack):
    routes = {r.name: r.inputs for r in stack.of_type("aws:ec2/route:Route")}
    assert routes["network-private-nat"]["destinationCidrBlock"] == "0.0.0.0/0"
    assert "natGatewayId" in routes["network-private-nat"]
    assert "gatewayId" in routes["network-public-default"]
    assert len(routes) == 2  # intra subnets have no route out


def test_s3_gateway_endpoint_on_the_private_route_table(stack):
    endpoint = stack.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    assert endpoint["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert endpoint["vpcEndpointType"] == "Gateway"
    private_rt = stack.one("aws:ec2/routeTable:RouteTable", "network-private-rt")
    assert private_rt.urn in stack.one("aws:ec2/vpcEndpoint:VpcEndpoint").dependencies
    assert len(endpoint["routeTableIds"]) == 1


def test_every_subnet_is_associated_with_its_tier_route_table(stack):
    associations = stack.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert len(associations) == len(stack.of_type(SUBNET))
    for a in associations:
        tier = a.name.split("-")[1]
        assert stack.one("aws:ec2/routeTable:RouteTable", f"network-{tier}-rt").urn in a.dependencies


def test_default_security_group_is_emptied(stack):
    sg = stack.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert sg.get("ingress", []) == [] and sg.get("egress", []) == []
