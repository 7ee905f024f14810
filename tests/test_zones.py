"""Zones by ID: EKS's refused control-plane zones, a plan that does not move, pinning with `availabilityZones`."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from infra.zones import DISALLOWED_CONTROL_PLANE_ZONE_IDS, plan_zones
from tools.offline import OFFLINE

SUBNET = "aws:ec2/subnet:Subnet"
ZONES_INVOKE = "aws:index/getAvailabilityZones:getAvailabilityZones"


def zone_ids(run, tier: str) -> list[str]:
    return [r.inputs["availabilityZoneId"] for r in run.of_type(SUBNET) if r.name.startswith(f"network-{tier}-")]


@pytest.mark.parametrize(
    ("region", "refused"), [("us-east-1", "use1-az3"), ("us-west-1", "usw1-az2"), ("ca-central-1", "cac1-az3")]
)
def test_no_control_plane_subnet_in_a_zone_eks_refuses(render, region, refused):
    run = render(**{"aws:region": region})
    region_zone_ids = set(OFFLINE["availability_zones"][region].values())
    assert refused in region_zone_ids  # the offline engine answers with the refused zone, so this can fail
    assert set(zone_ids(run, "private")) == set(zone_ids(run, "public")) == region_zone_ids
    assert set(zone_ids(run, "intra")) == region_zone_ids - {refused}


def test_every_subnet_is_placed_by_zone_id_not_name(render):
    run = render(**{"aws:region": "us-east-1"})
    for subnet in run.of_type(SUBNET):
        assert "availabilityZone" not in subnet.inputs, subnet.name
        assert subnet.name.endswith(subnet.inputs["availabilityZoneId"])


def test_the_refused_zone_table_names_the_three_zones_of_the_eks_user_guide():
    assert DISALLOWED_CONTROL_PLANE_ZONE_IDS == {
        "use1-az3": "us-east-1",
        "usw1-az2": "us-west-1",
        "cac1-az3": "ca-central-1",
    }


def test_zones_are_discovered_without_the_state_filter(stack):
    (arguments,) = [args for token, args in stack.invokes if token == ZONES_INVOKE]
    assert "state" not in arguments  # an impaired zone must not drop out of the plan of a live cluster
    assert arguments["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def test_a_zone_keeps_its_cidrs_when_another_zone_is_added():
    three = plan_zones(["a", "b", "d"], ["usw2-az1", "usw2-az2", "usw2-az4"])
    four = plan_zones(["a", "b", "c", "d"], ["usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"])
    slots_of_three = {z.id: z.slot for z in three.zones}
    assert slots_of_three == {z.id: z.slot for z in four.zones if z.id in slots_of_three}
    assert {z.id: z.slot for z in four.zones}["usw2-az3"] == 2


def test_zone_names_do_not_move_the_plan(render):
    # usw2-az1 is us-west-2b in the offline account: its private subnet takes slot 0 whatever its name.
    run = render()
    private = {
        r.inputs["availabilityZoneId"]: r.inputs["cidrBlock"] for r in run.of_type(SUBNET) if "-private-" in r.name
    }
    assert private == {
        "usw2-az1": "10.0.0.0/20",
        "usw2-az2": "10.0.16.0/20",
        "usw2-az3": "10.0.32.0/20",
        "usw2-az4": "10.0.48.0/20",
    }


def test_pinned_zones_are_the_only_zones(render):
    run = render(availabilityZones="usw2-az4,usw2-az1")
    assert sorted(zone_ids(run, "private")) == sorted(zone_ids(run, "intra")) == ["usw2-az1", "usw2-az4"]


def test_a_pinned_zone_the_region_lacks_is_a_config_error_naming_its_index(render):
    with pytest.raises(ConfigError) as error:
        render(availabilityZones="usw2-az1,use1-az1")
    assert error.value.keys == ("availabilityZones[1]",)
    assert "use1-az1" in str(error.value) and "usw2-az2" in str(error.value)


def test_too_few_control_plane_zones_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 2"):
        plan_zones(["us-west-1a", "us-west-1c"], ["usw1-az3", "usw1-az2"])
