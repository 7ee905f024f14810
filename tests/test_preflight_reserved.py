"""preflight and reservations (issue 31 item 7): a launch into a Capacity Reservation (an On-Demand Capacity
Reservation or a Capacity Block, which EC2 delivers as a targeted Capacity Reservation) uses quota the reservation
already holds, so the On-Demand vCPU quota's headroom says nothing about it and must not block a reserved pool."""

from __future__ import annotations

import json

import pytest

from tests.test_preflight import Endpoint, aws_env, checks  # noqa: F401 (aws_env is a fixture)
from tools.preflight.report import BLOCKED

pytestmark = pytest.mark.usefixtures("aws_env")
ON_DEMAND_P = "L-417A185B"  # Running On-Demand P instances (infra/data/ec2_vcpu_quotas.json)


def block_pool(capacity_types: list[str]) -> str:
    pool = {
        "name": "block-h100",
        "instanceTypes": ["p5.48xlarge"],
        "capacityTypes": capacity_types,
        "capacityReservationIds": ["cr-0123456789abcdef0"],
        "gpuLimit": 16,
    }
    return json.dumps([pool])


def test_a_reserved_only_pool_is_not_blocked_by_a_full_on_demand_quota():
    """The Capacity Block's reservation already counts toward the On-Demand quota (EC2 user guide, On-Demand Capacity
    Reservations, Limitations: 'Active and unused Capacity Reservations count toward your On-Demand Instance
    limits'): a full quota is what an account holding that block looks like, and its nodes still launch."""
    endpoint = Endpoint().quota(ON_DEMAND_P, 0)
    [report], _, _ = checks(endpoint, "us-east-1", gpuPools=block_pool(["reserved"]))

    assert report.verdict != BLOCKED and report.blocking == []
    assert endpoint.called("get_service_quota") == []  # no quota governs a launch into a reservation
    assert not [w for w in report.warnings if ON_DEMAND_P in w]
    assert any("reservation" in note and "quota" in note for note in report.notes), report.notes
    assert not [s for s in report.skipped if "quota" in s]  # nothing left unchecked: exit 0 in CI


def test_reserved_with_on_demand_fallback_warns_about_the_fallback_only():
    """On-Demand after the reservation is used up or ends does need headroom: a warning, not a block, because the
    pool still launches into its reservation."""
    endpoint = Endpoint().quota(ON_DEMAND_P, 0)
    [report], _, _ = checks(endpoint, "us-east-1", gpuPools=block_pool(["reserved", "on-demand"]))

    assert report.blocking == []
    assert [q["code"] for q in report.quotas] == [ON_DEMAND_P]
    fallback = [w for w in report.warnings if ON_DEMAND_P in w]
    assert fallback and all("the pool still launches into its reservations" in w for w in fallback), fallback


def test_on_demand_alone_is_still_blocked_by_a_zero_quota():
    """The same quota still blocks a pool that can only launch On-Demand (the check itself is unchanged)."""
    pools = json.dumps([{"name": "h100", "instanceTypes": ["p5.48xlarge"], "capacityTypes": ["on-demand"]}])
    endpoint = Endpoint().quota(ON_DEMAND_P, 0)
    [report], _, _ = checks(endpoint, "us-east-1", gpuPools=pools)
    assert report.verdict == BLOCKED and ON_DEMAND_P in report.blocking[0]
