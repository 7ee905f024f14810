"""Keys of Karpenter (infra/karpenter.py): the chart version and the account's Spot service-linked role."""

from __future__ import annotations

from pydantic import field_validator

from infra.catalog.data import load_data
from infra.config.convert import Bool, Section, key, semver

# The minor the policies, CRD checks and chart values are written for (infra/data/karpenter_versions.json).
_KARPENTER = load_data("karpenter_versions")
TESTED_MINOR: tuple[int, int] = tuple(int(part) for part in _KARPENTER["tested_minor"].split("."))  # type: ignore[assignment]


class KarpenterKeys(Section):
    karpenter_version: str = key("1.14.1", "Karpenter chart version (karpenter and karpenter-crd charts).")
    create_spot_service_linked_role: Bool = key(
        False, "Create the account-wide AWSServiceRoleForEC2Spot role (only if the account has never used Spot)."
    )

    @field_validator("karpenter_version")
    @classmethod
    def _karpenter(cls, v: str) -> str:
        if semver(v)[:2] != TESTED_MINOR:
            minor = _KARPENTER["tested_minor"]
            raise ValueError(
                f"is not a {minor}.x release, the only Karpenter this program is tested with: tied to {minor} are "
                f"{'; '.join(_KARPENTER['tied'])} (infra/data/karpenter_versions.json says how to move on)"
            )
        return v
