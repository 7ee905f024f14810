"""Which EC2 vCPU quota governs a family (data: infra/data/ec2_vcpu_quotas.json), and the quota check of one pool:
one instance of some type must fit (else blocked), the pool's gpuLimit should fit (else a warning). Launches into
reservations (capacity type 'reserved') consume no new quota and are never blocked by one (PURCHASE below)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.catalog.data import load_data
from infra.catalog.gpus import CATALOG
from tools.preflight.aws import Aws, Skip
from tools.preflight.report import listed

_DATA = load_data("ec2_vcpu_quotas")
# Capacity type -> the purchase option whose vCPU quota a new launch consumes. 'reserved' has none: a launch into a
# Capacity Reservation uses quota the reservation already holds. EC2 user guide, On-Demand Capacity Reservations
# (awsdocs/amazon-ec2-user-guide doc_source/ec2-capacity-reservations.md), Quotas: "You can reserve capacity for as
# many instances as that quota allows, minus the number of instances that are already running"; Limitations: "Active
# and unused Capacity Reservations count toward your On-Demand Instance limits". Capacity Blocks "are delivered as
# targeted Capacity Reservations" (EC2 user guide, capacity-blocks-using). So the On-Demand headroom (quota minus what
# runs) says nothing about a reserved launch: a block that fills the quota is the normal case, and its nodes launch.
PURCHASE = {"spot": "spot", "on-demand": "on-demand"}
LABEL = {"spot": "Spot", "on-demand": "On-Demand"}
RESERVED_NOTE = (
    "reserved: launches into the pool's Capacity Reservations use the On-Demand quota the reservations already hold "
    "(EC2 user guide, On-Demand Capacity Reservations: active and unused reservations count toward it), so no vCPU "
    "quota can stop them; whether the reservations exist and are active is not checked here"
)


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


def quota_value(aws: Aws, region: str, code: str) -> tuple[float, str, dict[str, Any] | None]:
    """The account's applied value (or AWS's default when none is applied), which one it is, and the quota's
    `UsageMetric` (where CloudWatch counts what runs against it)."""
    try:
        found = aws.call("service-quotas", region, "GetServiceQuota", ServiceCode="ec2", QuotaCode=code)
        kind = "applied"
    except Skip as skip:
        if "NoSuchResource" not in str(skip):
            raise
        found = aws.call("service-quotas", region, "GetAWSDefaultServiceQuota", ServiceCode="ec2", QuotaCode=code)
        kind = "AWS default"
    return float(found["Quota"]["Value"]), kind, found["Quota"].get("UsageMetric")


USAGE_WINDOW = timedelta(hours=1)  # the usage metric is written every minute while instances run


def current_usage(aws: Aws, region: str, metric: dict[str, Any] | None, now: datetime | None = None) -> float:
    """vCPUs running against a quota now: CloudWatch `AWS/Usage` `ResourceCount` with the dimensions the quota's
    UsageMetric names (Service Quotas user guide, "Service Quotas and Amazon CloudWatch alarms"), its most recent
    value in the last hour; no datapoint means nothing runs. Raises Skip when it cannot be read."""
    if not metric or not metric.get("MetricName"):
        raise Skip("the quota names no usage metric")
    now = now or datetime.now(UTC)
    found = aws.call(
        "cloudwatch",
        region,
        "GetMetricData",
        MetricDataQueries=[
            {
                "Id": "usage",
                "MetricStat": {
                    "Metric": {
                        "Namespace": metric.get("MetricNamespace", "AWS/Usage"),
                        "MetricName": metric["MetricName"],
                        "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(metric["MetricDimensions"].items())],
                    },
                    "Period": 60,
                    "Stat": metric.get("MetricStatisticRecommendation") or "Maximum",
                },
                "ReturnData": True,
            }
        ],
        StartTime=now - USAGE_WINDOW,
        EndTime=now,
        ScanBy="TimestampDescending",
    )
    values = [v for result in found.get("MetricDataResults", []) for v in result.get("Values", [])]
    return float(values[0]) if values else 0.0


def quota_and_usage(aws: Aws, region: str, code: str) -> tuple[float, str, float | Skip] | Skip:
    """(limit, its kind, vCPUs in use or why that is unknown), or why the quota itself is unknown."""
    try:
        limit, kind, metric = quota_value(aws, region, code)
    except Skip as skip:
        return skip
    try:
        return limit, kind, current_usage(aws, region, metric)
    except Skip as skip:
        return limit, kind, skip


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
    purchases = sorted({PURCHASE[c] for c in pool.capacity_types if c in PURCHASE}, key=list(LABEL).index)
    reserved = "reserved" in pool.capacity_types
    if reserved:
        report.notes.append(RESERVED_NOTE)
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
                cache[quota.code] = quota_and_usage(aws, region, quota.code)
            found = cache[quota.code]
            if isinstance(found, Skip):
                report.skipped.append(f"{LABEL[purchase]} quota {quota}: {found}")
                can_launch = True
                continue
            limit, kind, used = found
            if isinstance(used, Skip):
                report.skipped.append(f"{LABEL[purchase]} vCPUs in use ({quota.code}): {used}")
                used = 0.0
            value = limit - used  # the headroom: what new instances may still use
            report.checked.add("quota")
            smallest = min(names, key=lambda n: CATALOG[n].vcpu)
            need = max(names, key=lambda n: instances_for(pool.most_gpus, n) * CATALOG[n].vcpu)
            need_vcpu = instances_for(pool.most_gpus, need) * CATALOG[need].vcpu
            report.quotas.append(
                {
                    "purchase": purchase,
                    "code": quota.code,
                    "name": quota.name,
                    "value": limit,
                    "in_use": used,
                    "headroom": value,
                    "source": kind,
                    "types": names,
                    "one_instance_vcpus": CATALOG[smallest].vcpu,
                    "gpu_limit_vcpus": need_vcpu,
                }
            )
            fits = [n for n in names if CATALOG[n].vcpu <= value]
            if not fits:
                problems[purchase].append(
                    f"{LABEL[purchase]} vCPU quota {quota} is {limit:g} ({kind}) in {region} with {used:g} in use: "
                    f"{value:g} left, below one {smallest} ({CATALOG[smallest].vcpu} vCPUs): this pool cannot "
                    f"launch {purchase} {listed(names)} now; request an increase: "
                    f"{increase_command(quota.code, int(need_vcpu + used), region)}"
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
                nodes = int(value // CATALOG[need].vcpu)
                report.warnings.append(
                    f"{LABEL[purchase]} vCPU quota {quota.code} is {limit:g} ({kind}) with {used:g} in use: "
                    f"{value:g} left fits {nodes} of the {instances_for(pool.most_gpus, need)} {need} nodes "
                    f"{pool.bound_by} takes ({need_vcpu} vCPUs); request an increase: "
                    f"{increase_command(quota.code, int(need_vcpu + used), region)}"
                )
        launchable[purchase] = can_launch
    for purchase in purchases:
        if not problems[purchase]:
            continue
        if any(launchable.values()) or reserved:
            others = [LABEL[p] for p, ok in launchable.items() if ok] + ["into its reservations"] * reserved
            report.warnings += [f"{p} (the pool still launches {' or '.join(others)})" for p in problems[purchase]]
        else:
            report.blocking += problems[purchase]
