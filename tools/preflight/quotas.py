"""Which EC2 vCPU quota governs a family (data: infra/data/ec2_vcpu_quotas.json), and the quota check of one pool:
one instance of some type must fit (else blocked), the pool's gpuLimit should fit (else a warning)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from infra.catalog.data import load_data
from infra.catalog.gpus import CATALOG
from tools.preflight.aws import Aws, Skip
from tools.preflight.report import listed

_DATA = load_data("ec2_vcpu_quotas")
# Capacity type -> the purchase option whose quota it consumes. 'reserved': On-Demand Capacity Reservations run as
# On-Demand instances and count toward the On-Demand vCPU quota (Capacity Blocks have their own quotas: not checked).
PURCHASE = {"spot": "spot", "on-demand": "on-demand", "reserved": "on-demand"}
LABEL = {"spot": "Spot", "on-demand": "On-Demand"}


@dataclass(frozen=True)
class Quota:
    code: str
    name: str
    purchase: str

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


def quota_for(family: str, purchase: str) -> Quota | str:
    """The quota governing `family` for `purchase` ('spot' or 'on-demand'), or why none is known."""
    entries = _DATA[purchase]
    for entry in entries:
        if family in entry.get("families", ()):
            return Quota(entry["code"], entry["name"], purchase)
    for prefix, reason in _DATA.get("unknown", {}).get(purchase, {}).items():
        if family.startswith(prefix):
            return reason
    for entry in entries:
        if any(family.startswith(p) for p in entry.get("prefixes", ())):
            return Quota(entry["code"], entry["name"], purchase)
    return f"no {LABEL[purchase]} vCPU quota is known for family {family} (infra/data/ec2_vcpu_quotas.json)"


def quota_value(aws: Aws, region: str, code: str) -> tuple[float, str]:
    """The account's applied value (or AWS's default when none is applied) and which one it is."""
    try:
        found = aws.call("service-quotas", region, "GetServiceQuota", ServiceCode="ec2", QuotaCode=code)
        return float(found["Quota"]["Value"]), "applied"
    except Skip as skip:
        if "NoSuchResource" not in str(skip):
            raise
    found = aws.call("service-quotas", region, "GetAWSDefaultServiceQuota", ServiceCode="ec2", QuotaCode=code)
    return float(found["Quota"]["Value"]), "AWS default"


def increase_command(code: str, value: int, region: str) -> str:
    return (
        f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
        f"--desired-value {value} --region {region}"
    )


def instances_for(gpu_limit: int, name: str) -> int:
    return math.ceil(gpu_limit / CATALOG[name].gpu_count)


def check_quotas(aws: Aws, region: str, pool: Any, types: list[str], report: Any, cache: dict[str, Any]) -> None:
    """Per purchase option of the pool: group its types by quota, compare one instance and gpuLimit with the quota.
    Blocking only when no purchase option can launch any type; a purchase option that cannot is a warning."""
    purchases = sorted({PURCHASE[c] for c in pool.capacity_types}, key=list(LABEL).index)
    launchable: dict[str, bool] = {}
    problems: dict[str, list[str]] = {}
    for purchase in purchases:
        groups: dict[Quota, list[str]] = {}
        can_launch = False
        problems[purchase] = []
        for name in types:
            quota = quota_for(CATALOG[name].family, purchase)
            if isinstance(quota, str):
                report.skipped.append(f"{LABEL[purchase]} quota for {name}: {quota}")
                can_launch = True  # unknown is not blocked
                continue
            groups.setdefault(quota, []).append(name)
        for quota, names in groups.items():
            if quota.code not in cache:
                try:
                    cache[quota.code] = quota_value(aws, region, quota.code)
                except Skip as skip:
                    cache[quota.code] = skip
            found = cache[quota.code]
            if isinstance(found, Skip):
                report.skipped.append(f"{LABEL[purchase]} quota {quota}: {found}")
                can_launch = True
                continue
            value, kind = found
            report.checked.add("quota")
            smallest = min(names, key=lambda n: CATALOG[n].vcpu)
            need = max(names, key=lambda n: instances_for(pool.gpu_limit, n) * CATALOG[n].vcpu)
            need_vcpu = instances_for(pool.gpu_limit, need) * CATALOG[need].vcpu
            report.quotas.append(
                {
                    "purchase": purchase,
                    "code": quota.code,
                    "name": quota.name,
                    "value": value,
                    "source": kind,
                    "types": names,
                    "one_instance_vcpus": CATALOG[smallest].vcpu,
                    "gpu_limit_vcpus": need_vcpu,
                }
            )
            fits = [n for n in names if CATALOG[n].vcpu <= value]
            if not fits:
                problems[purchase].append(
                    f"{LABEL[purchase]} vCPU quota {quota} is {value:g} ({kind}) in {region}, below one "
                    f"{smallest} ({CATALOG[smallest].vcpu} vCPUs): this pool can never launch {purchase} "
                    f"{listed(names)}; request an increase: {increase_command(quota.code, need_vcpu, region)}"
                )
                continue
            can_launch = True
            too_big = [n for n in names if n not in fits]
            if too_big:
                report.warnings.append(
                    f"{LABEL[purchase]} vCPU quota {quota.code} is {value:g}: {listed(too_big)} never fit "
                    f"(one instance needs more vCPUs)"
                )
            if value < need_vcpu:
                report.warnings.append(
                    f"{LABEL[purchase]} vCPU quota {quota.code} is {value:g} ({kind}); reaching gpuLimit "
                    f"{pool.gpu_limit} GPUs takes up to {need_vcpu} vCPUs ({instances_for(pool.gpu_limit, need)} x "
                    f"{need}); request an increase: {increase_command(quota.code, need_vcpu, region)}"
                )
        launchable[purchase] = can_launch
    for purchase in purchases:
        if not problems[purchase]:
            continue
        if any(launchable.values()):
            others = [LABEL[p] for p, ok in launchable.items() if ok]
            report.warnings += [f"{p} (the pool still launches {' or '.join(others)})" for p in problems[purchase]]
        else:
            report.blocking += problems[purchase]
