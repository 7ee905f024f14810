"""render works in every region EKS runs in (commercial partition): zone IDs from AWS's zone table
(infra/data/zone_ids.json), checked against botocore's own list of EKS regions; other partitions and unknown regions
are refused with one message that says why and what to do."""

from __future__ import annotations

import json

import botocore
import pytest

from infra.catalog.data import load_data
from infra.zones import DISALLOWED_CONTROL_PLANE_ZONE_IDS, MAX_ZONES, MIN_CONTROL_PLANE_ZONES, plan_zones
from tests.conftest import render_stack
from tools.generate_zone_ids import eks_regions, zone_ids
from tools.offline import OfflineRegionError, region_zones

ZONE_IDS = load_data("zone_ids")["regions"]


def botocore_endpoints() -> dict:
    from pathlib import Path

    return json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_text())


def test_every_region_botocore_lists_for_eks_has_zone_ids():
    assert set(eks_regions(botocore_endpoints())) <= set(ZONE_IDS)
    assert len(ZONE_IDS) >= 30


@pytest.mark.parametrize("region", sorted(ZONE_IDS))
def test_the_zone_plan_of_every_region(region):
    names, ids = region_zones(region)
    assert ids and all(i.startswith(ids[0].rsplit("-", 1)[0]) for i in ids)  # one region's prefix
    plan = plan_zones(names, ids)
    assert len(plan.control_plane) >= MIN_CONTROL_PLANE_ZONES
    assert all(z.slot < MAX_ZONES for z in plan.zones)
    assert not set(DISALLOWED_CONTROL_PLANE_ZONE_IDS) & {z.id for z in plan.control_plane}


@pytest.mark.parametrize(("region", "zones"), [("ap-south-1", 3), ("eu-north-1", 3)])
def test_full_renders_outside_the_engines_fixed_regions(region, zones):
    run = render_stack(**{"aws:region": region})
    private = [r for r in run.of_type("aws:ec2/subnet:Subnet") if "-private-" in r.name]
    assert len(private) == zones
    assert {r.inputs["availabilityZoneId"] for r in private} == set(ZONE_IDS[region])


@pytest.mark.parametrize(("region", "words"), [("cn-north-1", "aws-cn partition"), ("us-gov-west-1", "aws-us-gov")])
def test_other_partitions_are_refused_saying_so(region, words):
    with pytest.raises(OfflineRegionError) as error:
        region_zones(region)
    assert f"aws:region = {region!r}" in str(error.value) and words in str(error.value)


def test_a_region_without_zone_ids_names_the_key_and_how_to_pin_zones_and_renders_when_pinned():
    # The offline engine alone: config refuses xx-east-9 first (no partition lists it; tests/test_stack_files.py).
    with pytest.raises(OfflineRegionError) as error:
        region_zones("xx-east-9")
    assert "aws:region = 'xx-east-9'" in str(error.value) and "availabilityZones" in str(error.value)
    assert region_zones("xx-east-9", ["xxe9-az1", "xxe9-az2"]) == (
        ["xx-east-9a", "xx-east-9b"],
        ["xxe9-az1", "xxe9-az2"],
    )


def test_the_generator_reads_the_aws_table_and_reports_regions_it_lacks():
    page = "\n".join(
        [
            "| AZ ID | Region | Geography |",
            "| --- | --- | --- |",
            "| euw1-az2 | eu-west-1 | Europe |",
            "| euw1-az1 | eu-west-1 | Europe |",
            "| euw1-az3 | eu-west-1 | Europe |",
        ]
    )
    endpoints = {
        "partitions": [
            {
                "partition": "aws",
                "regions": {"eu-west-1": {}, "eu-west-9": {}},
                "services": {"eks": {"endpoints": {"eu-west-1": {}, "eu-west-9": {}, "fips-x": {}}}},
            }
        ]
    }
    document, missing = zone_ids(page, endpoints)
    assert document["regions"] == {"eu-west-1": ["euw1-az1", "euw1-az2", "euw1-az3"]}
    assert missing == ["eu-west-9"]
