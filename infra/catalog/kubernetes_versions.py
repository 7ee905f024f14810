"""Kubernetes versions and their EKS support windows (infra/data/kubernetes_versions.json, dated and sourced).

A version is in standard support until its end-of-standard date, then in extended support (billed at the extended
price per cluster-hour) until its end-of-extended date, then ended: EKS no longer supports it. Today's date is always
a parameter, so tests inject it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from infra.catalog.data import load_data

_DATA = load_data("kubernetes_versions")
_PRICING = _DATA["pricing"]
STANDARD_PRICE: float = _PRICING["standard_per_cluster_hour"]
EXTENDED_PRICE: float = _PRICING["extended_per_cluster_hour"]
HOURS_PER_MONTH: int = _PRICING["hours_per_month"]
STANDARD, EXTENDED, ENDED = "standard", "extended", "ended"


@dataclass(frozen=True)
class KubernetesVersion:
    version: str
    eks_release: date
    end_of_standard: date
    end_of_extended: date
    source: str

    def status(self, today: date) -> str:
        if today < self.end_of_standard:
            return STANDARD
        if today < self.end_of_extended:
            return EXTENDED
        return ENDED


VERSIONS: dict[str, KubernetesVersion] = {
    name: KubernetesVersion(
        name,
        date.fromisoformat(row["eks_release"]),
        date.fromisoformat(row["end_of_standard"]),
        date.fromisoformat(row["end_of_extended"]),
        row["source"],
    )
    for name, row in _DATA["versions"].items()
}
SUPPORTED: tuple[str, ...] = tuple(sorted(VERSIONS, key=lambda v: tuple(map(int, v.split(".")))))
NEWEST: str = SUPPORTED[-1]
KARPENTER_RANGES: dict[str, tuple[str, str]] = {
    minor: (row["min"], row["max"]) for minor, row in _DATA["karpenter"].items() if not minor.startswith("_")
}
BOTTLEROCKET_NVIDIA_VARIANTS: dict[str, tuple[str, ...]] = {
    release: tuple(row["nvidia_variants"])
    for release, row in _DATA["bottlerocket"].items()
    if not release.startswith("_")
}


def minor(version: str) -> tuple[int, int]:
    major, minor_ = version.split(".")[:2]
    return int(major), int(minor_)


def extra_cost_per_month() -> float:
    """What extended support adds per cluster and month."""
    return (EXTENDED_PRICE - STANDARD_PRICE) * HOURS_PER_MONTH


def status_line(version: str, today: date) -> str:
    """One line for render: the version's support status on `today`, with dates and price."""
    entry = VERSIONS[version]
    status = entry.status(today)
    if status == STANDARD:
        return (
            f"Kubernetes {version}: EKS standard support until {entry.end_of_standard} (${STANDARD_PRICE:.2f} per "
            f"cluster-hour), then extended support until {entry.end_of_extended}"
        )
    if status == EXTENDED:
        return (
            f"warning: Kubernetes {version} is in EKS extended support since {entry.end_of_standard} (until "
            f"{entry.end_of_extended}): ${EXTENDED_PRICE:.2f} instead of ${STANDARD_PRICE:.2f} per cluster-hour, about "
            f"${extra_cost_per_month():.0f} more a month; upgrade one minor at a time to {NEWEST} (README, Upgrading "
            "Kubernetes)"
        )
    return ended_message(version)


def ended_message(version: str) -> str:
    entry = VERSIONS[version]
    return (
        f"kubernetesVersion = {version!r}: EKS extended support ended on {entry.end_of_extended}; EKS no longer "
        f"supports it. Upgrade one minor at a time towards {NEWEST} (README, Upgrading Kubernetes)"
    )


def upgrade_problem(running: str, wanted: str) -> str | None:
    """EKS upgrades the control plane one minor at a time and never downgrades it."""
    if minor(wanted) < minor(running):
        return f"kubernetesVersion = {wanted!r} is below the running {running}: EKS cannot downgrade a cluster"
    if minor(wanted)[1] - minor(running)[1] > 1:
        step = f"{minor(running)[0]}.{minor(running)[1] + 1}"
        return (
            f"kubernetesVersion = {wanted!r} is more than one minor above the running {running}: EKS upgrades one "
            f"minor at a time; set {step!r} first"
        )
    return None
