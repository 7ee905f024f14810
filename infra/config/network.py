"""Keys of the network (infra/network.py, infra/zones.py): the VPC range, pinned zones, ECR interface endpoints."""

from __future__ import annotations

import ipaddress
import re

from pydantic import field_validator

from infra.config.convert import Bool, Section, Strings, check_items, key, network

_PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
ZONE_ID = re.compile(r"^[a-z]{3,}[0-9]+-az[0-9]+$")


class NetworkKeys(Section):
    vpc_cidr: str = key("10.0.0.0/16", "VPC CIDR, a private /16 (split into private, public and intra subnets).")
    availability_zones: Strings = key(
        (), "Zone IDs (like use1-az1) to pin the VPC to; empty for every zone of the region that needs no opt-in."
    )
    ecr_interface_endpoints: Bool = key(
        False, "Interface VPC endpoints for ecr.api and ecr.dkr in the private subnets (billed per AZ-hour)."
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc(cls, v: str) -> str:
        found = network(v)
        if found.prefixlen > 16:
            raise ValueError("is too small: the subnet plan for 8 AZs (private /20, public /24, intra /24) needs a /16")
        if found.prefixlen < 16:
            raise ValueError("is too large: AWS VPCs are /16 at most")
        if not any(found.subnet_of(r) for r in _PRIVATE_RANGES):
            raise ValueError("must be a private range: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10")
        return str(found)

    @field_validator("availability_zones")
    @classmethod
    def _zones(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        check_items(
            v,
            lambda _, item: (
                None
                if ZONE_ID.match(item)
                else "is not a zone ID (like use1-az1; zone names like us-east-1a differ per account)"
            ),
            allow_empty=True,
        )
        if len(v) == 1:
            raise ValueError("pins one zone; EKS needs at least two")
        return v
