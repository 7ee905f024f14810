"""Kubernetes versions and their EKS support windows (infra/data/kubernetes_versions.json, dated and sourced).

A version is in standard support until its end-of-standard date, then in extended support (billed at the extended
price per cluster-hour) until its end-of-extended date, then ended: EKS no longer supports it. Today's date is always
a parameter, so tests inject it; `today()` is the clock's (UTC) unless `dated` set another for a run of the program.

The cluster's upgrade policy (kubernetesSupportType) decides what happens at the end of standard support: STANDARD,
EKS upgrades the control plane one minor on its own; EXTENDED, it stays, billed extended (EKS user guide,
view-upgrade-policy). "You cannot disable extended support once your cluster has entered it. You can only disable
extended support for clusters on standard support" (EKS user guide, disable-extended-support). So STANDARD is only
valid while the stack's version is in standard support: past it, a cluster still on that version is in extended
support (EKS refuses STANDARD), or EKS upgraded it and the stack names a version the cluster no longer runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime

from infra.catalog.data import load_data

_DATA = load_data("kubernetes_versions")
_PRICING = _DATA["pricing"]
STANDARD_PRICE: float = _PRICING["standard_per_cluster_hour"]
EXTENDED_PRICE: float = _PRICING["extended_per_cluster_hour"]
HOURS_PER_MONTH: int = _PRICING["hours_per_month"]
STANDARD, EXTENDED, ENDED = "standard", "extended", "ended"
_injected: list[date] = []  # the date `dated` set for the program run in progress (innermost last)


def today() -> date:
    """The date support windows are read against: UTC, the day EKS starts billing extended support on ("from 00:00
    UTC on the day standard support ends", infra/data/kubernetes_versions.json), unless a run injected one."""
    return _injected[-1] if _injected else datetime.now(UTC).date()


@contextmanager
def dated(day: date | None) -> Iterator[None]:
    """Run the program as of `day` (offline runs of tests and render, which inject their date); None: the clock."""
    if day is None:
        yield
        return
    _injected.append(day)
    try:
        yield
    finally:
        _injected.pop()


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


def status_line(version: str, today: date, support_type: str = "STANDARD") -> str:
    """One line for render: the version's support status on `today` under the upgrade policy the stack sends, with
    dates and the price that policy leads to."""
    entry = VERSIONS[version]
    status = entry.status(today)
    extra = f"about ${extra_cost_per_month():.0f} more a month"
    if status == STANDARD:
        then = (
            f"then extended support until {entry.end_of_extended} at ${EXTENDED_PRICE:.2f} per cluster-hour, {extra}"
            if support_type == "EXTENDED"
            else "then EKS upgrades the control plane one minor on its own (never billed for extended support)"
        )
        return (
            f"Kubernetes {version}: EKS standard support until {entry.end_of_standard} (${STANDARD_PRICE:.2f} per "
            f"cluster-hour); kubernetesSupportType {support_type}: {then}"
        )
    if status == EXTENDED:
        return (
            f"warning: Kubernetes {version} is in EKS extended support since {entry.end_of_standard} (until "
            f"{entry.end_of_extended}), kubernetesSupportType {support_type}: ${EXTENDED_PRICE:.2f} instead of "
            f"${STANDARD_PRICE:.2f} per cluster-hour, {extra}; upgrade one minor at a time to {NEWEST} (README, "
            "Upgrading Kubernetes)"
        )
    return ended_message(version)


def support_type_problem(version: str, support_type: str, today: date) -> str | None:
    """Why `support_type` cannot be sent for a cluster on `version` on `today` (module docstring), with the fix."""
    entry = VERSIONS[version]
    if support_type != "STANDARD" or entry.status(today) == STANDARD:
        return None
    return (
        f"is refused with kubernetesVersion {version}, which left EKS standard support on {entry.end_of_standard}: "
        "EKS cannot disable extended support on a cluster that entered it (EKS user guide, disable-extended-support) "
        f"and upgrades a STANDARD cluster at the end of standard support. If the cluster runs {version} (created with "
        "EXTENDED, or by an earlier version of this program: the EKS API's default is EXTENDED), set "
        f"kubernetesSupportType EXTENDED (${EXTENDED_PRICE:.2f} instead of ${STANDARD_PRICE:.2f} per cluster-hour, "
        f"about ${extra_cost_per_month():.0f} more a month) and upgrade one minor at a time; if EKS upgraded it, set "
        "kubernetesVersion to the version it runs (README, Upgrading Kubernetes)"
    )


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
