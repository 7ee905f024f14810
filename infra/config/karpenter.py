"""Keys of Karpenter (infra/karpenter.py): the chart version and the account's Spot service-linked role."""

from __future__ import annotations

from pydantic import field_validator

from infra.config.convert import Bool, Section, key, semver


class KarpenterKeys(Section):
    karpenter_version: str = key("1.14.1", "Karpenter chart version (karpenter and karpenter-crd charts).")
    create_spot_service_linked_role: Bool = key(
        False, "Create the account-wide AWSServiceRoleForEC2Spot role (only if the account has never used Spot)."
    )

    @field_validator("karpenter_version")
    @classmethod
    def _karpenter(cls, v: str) -> str:
        # 1.8 is where RAID0 instance stores bind the SOCI directory; EKS 1.33 needs >= 1.5 anyway.
        if semver(v) < (1, 8, 0) or semver(v) >= (2, 0, 0):
            raise ValueError("must be a 1.x release >= 1.8.0 (RAID0 binding of the SOCI directory)")
        return v
