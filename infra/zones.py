"""Availability zones, chosen by zone ID: which zones the VPC spans, which may hold the EKS control plane.

Zone names (`us-east-1a`) map to physical zones differently in every account; zone IDs (`use1-az1`) are the
physical zones. So the plan is made of IDs:
- every zone of the region that needs no opt-in, or the zones pinned by `availabilityZones`. No `state` filter:
  during an AZ incident `state=available` would drop a zone, and the plan of a live cluster would move;
- each zone's CIDR slot is its ID's number (`use1-az4` -> slot 3), so adding a zone never moves another zone's subnets;
- the control plane (intra subnets) leaves out the zone IDs EKS refuses (data/eks_control_plane_zones.json).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from infra.catalog.data import load_data
from infra.config import ConfigError, ConfigProblem, StackConfig

_EKS_ZONES = load_data("eks_control_plane_zones")
DISALLOWED_CONTROL_PLANE_ZONE_IDS: dict[str, str] = _EKS_ZONES["disallowed_zone_ids"]
CONTROL_PLANE_EXCLUSION_REASON = (
    "EKS does not allow control-plane subnets in this zone (EKS user guide, Subnet requirements)"
)
MAX_ZONES = 8  # the subnet plan has 8 slots per tier
MIN_CONTROL_PLANE_ZONES = 2  # EKS needs subnets in at least two zones
_ZONE_NUMBER = re.compile(r"-az([0-9]+)$")


@dataclass(frozen=True)
class Zone:
    name: str
    id: str

    @property
    def slot(self) -> int:
        """Index of this zone's subnets in the CIDR plan: the number of its zone ID, from 0."""
        return int(_ZONE_NUMBER.search(self.id)[1]) - 1

    def __str__(self) -> str:
        return f"{self.id} ({self.name})"


@dataclass(frozen=True)
class ZonePlan:
    zones: tuple[Zone, ...]
    """Zones of the private and public subnets (nodes, load balancers), in slot order."""
    control_plane: tuple[Zone, ...]
    """Zones of the intra subnets, where EKS places the control-plane network interfaces."""

    @property
    def excluded_from_control_plane(self) -> tuple[Zone, ...]:
        return tuple(z for z in self.zones if z not in self.control_plane)


def plan_zones(names: Sequence[str], zone_ids: Sequence[str], pinned: Sequence[str] = ()) -> ZonePlan:
    """Plan from a region's zones (parallel lists of names and IDs, as EC2 DescribeAvailabilityZones returns them)."""
    region_zones = {zone_id: Zone(name, zone_id) for name, zone_id in zip(names, zone_ids, strict=True)}
    problems = [
        ConfigProblem(
            f"availabilityZones[{i}]",
            zone_id,
            f"is not a zone of this region; its zones: {', '.join(sorted(region_zones))}",
        )
        for i, zone_id in enumerate(pinned)
        if zone_id not in region_zones
    ]
    if problems:
        raise ConfigError(problems)
    chosen = [region_zones[z] for z in pinned] if pinned else list(region_zones.values())
    chosen = [z for z in chosen if _ZONE_NUMBER.search(z.id)]  # local and wavelength zones have other ID shapes
    too_high = [z for z in chosen if z.slot >= MAX_ZONES]
    if too_high:
        raise ConfigError(
            [
                ConfigProblem(
                    "availabilityZones",
                    list(pinned),
                    f"zone {too_high[0]} is beyond the {MAX_ZONES} slots of the subnet plan; pin at most "
                    f"{MAX_ZONES} zones numbered az1-az{MAX_ZONES}",
                )
            ]
        )
    zones = tuple(sorted(chosen, key=lambda z: z.slot))
    control_plane = tuple(z for z in zones if z.id not in DISALLOWED_CONTROL_PLANE_ZONE_IDS)
    if len(control_plane) < MIN_CONTROL_PLANE_ZONES:
        raise ConfigError(
            [
                ConfigProblem(
                    "availabilityZones",
                    [z.id for z in zones],
                    f"leaves {len(control_plane)} zone(s) EKS accepts for the control plane; it needs at least "
                    f"{MIN_CONTROL_PLANE_ZONES} (EKS refuses {', '.join(DISALLOWED_CONTROL_PLANE_ZONE_IDS)})",
                )
            ]
        )
    return ZonePlan(zones=zones, control_plane=control_plane)


def discover_zones(cfg: StackConfig) -> ZonePlan:
    """Ask EC2 for the region's zones (an invoke: the offline engine answers from data/offline.json)."""
    import pulumi_aws as aws

    found = aws.get_availability_zones(filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}])
    return plan_zones(found.names, found.zone_ids, cfg.availability_zones)
