"""The preflight of every GPU pool: zones, offerings (blocking when no type is offered in the stack's zones),
quotas (tools/preflight/quotas.py) and the Spot market (tools/preflight/spot.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.config import StackConfig
from infra.zones import plan_zones
from tools.preflight.aws import Aws, Skip
from tools.preflight.pooltypes import alternatives, pool_types, type_list_path
from tools.preflight.quotas import check_quotas
from tools.preflight.report import PoolReport
from tools.preflight.spot import check_spot

MAX_ALTERNATIVES = 3
_FILTER_VALUES = 50  # instance types per DescribeInstanceTypeOfferings filter


@dataclass
class Region:
    """What the preflight learned about the stack's region, shared by every pool."""

    name: str
    zones: list[str] | None = None  # the stack's zone IDs (the program's zone plan); None when unknown
    zone_ids: dict[str, str] = field(default_factory=dict)  # zone name -> zone ID
    offered: dict[str, set[str]] | None = None  # type -> zone IDs offering it; None when unknown
    elsewhere: dict[str, set[str]] = field(default_factory=dict)  # compared region -> types offered there
    skipped: list[str] = field(default_factory=list)
    quota_cache: dict[str, Any] = field(default_factory=dict)
    # What each `pulumi config` command of the advice needs to edit the file read (tools/stack_files.config_target).
    config_target: str = ""

    def config(self, command: str) -> str:
        """`pulumi config <command>` for this stack's file."""
        return f"pulumi config {command} {self.config_target}".rstrip()


def discover_zones(aws: Aws, cfg: StackConfig, region: Region) -> None:
    """The program's zone plan (infra/zones.py): pinned zones, or every zone needing no opt-in. A pinned zone the
    region lacks raises ConfigError, as `pulumi up` would."""
    try:
        found = aws.call(
            "ec2",
            region.name,
            "DescribeAvailabilityZones",
            Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required"]}],
        )["AvailabilityZones"]
    except Skip as skip:
        region.skipped.append(f"zones: {skip}")
        region.zones = list(cfg.availability_zones) or None
        return
    region.zone_ids = {z["ZoneName"]: z["ZoneId"] for z in found}
    plan = plan_zones([z["ZoneName"] for z in found], [z["ZoneId"] for z in found], cfg.availability_zones)
    region.zones = [z.id for z in plan.zones]


def _offerings(aws: Aws, region: str, types: list[str], location_type: str) -> list[dict[str, Any]]:
    rows = []
    for start in range(0, len(types), _FILTER_VALUES):
        rows += aws.pages(
            "ec2",
            region,
            "DescribeInstanceTypeOfferings",
            "InstanceTypeOfferings",
            LocationType=location_type,
            Filters=[{"Name": "instance-type", "Values": types[start : start + _FILTER_VALUES]}],
        )
    return rows


def discover_offerings(aws: Aws, region: Region, types: list[str], compare: list[str]) -> None:
    try:
        with aws.check():
            rows = _offerings(aws, region.name, types, "availability-zone-id")
    except Skip as skip:
        region.skipped.append(f"offerings: {skip}")
    else:
        region.offered = {t: set() for t in types}
        for row in rows:
            region.offered.setdefault(row["InstanceType"], set()).add(row["Location"])
    for other in compare:
        try:
            with aws.check():
                region.elsewhere[other] = {row["InstanceType"] for row in _offerings(aws, other, types, "region")}
        except Skip as skip:
            region.skipped.append(f"offerings in {other}: {skip}")


def check_offerings(cfg: StackConfig, index: int, pool: Any, region: Region, report: PoolReport) -> list[str]:
    """Which of the pool's types are offered in the stack's zones; returns those (all types when unknown)."""
    types = report.instance_types
    if region.offered is None:
        report.zones = list(region.zones or [])
        return types
    report.checked.add("offerings")
    zones = region.zones or sorted(set().union(*region.offered.values()))
    # A training pool (gpuPools[i].zone) launches only in its one zone: its types must be offered there.
    pinned = getattr(pool, "zone", None)
    scope = f"the pool's zone {pinned} of" if pinned else "the stack's zones of"
    zones = [pinned] if pinned else zones
    usable = {t: sorted(region.offered.get(t, set()) & set(zones)) for t in types}
    report.offerings = usable
    report.zones = sorted({z for found in usable.values() for z in found})
    missing = [t for t in types if not usable[t]]
    path = type_list_path(cfg, index, pool)
    if len(missing) == len(types):
        offered_alternatives = [a for a in alternatives(types) if region.offered.get(a, set()) & set(zones)]
        fixes = []
        if offered_alternatives and path:
            fixes.append(
                "use a type offered here, e.g. "
                + " or ".join(f"`{region.config(set_first(path, a))}`" for a in offered_alternatives[:2])
            )
        elif offered_alternatives:
            fixes.append(f"widen the pool's selection (offered here: {', '.join(offered_alternatives[:3])})")
        where = [r for r, found in region.elsewhere.items() if set(types) & found]
        if where:
            fixes.append(
                f"offered in {', '.join(where)} (a stack there: `{region.config(f'set aws:region {where[0]}')}`)"
            )
        report.blocking.append(
            f"none of its types ({', '.join(types)}) is offered in {scope} {region.name} "
            f"({', '.join(zones)}): the pool can never launch" + (f"; {'; '.join(fixes)}" if fixes else "")
        )
        return []
    for name in missing:
        position = types.index(name)
        remove = region.config(f"rm --path '{path}[{position}]'")
        fix = f"; `{remove}`" if path else ""
        report.warnings.append(
            f"{name} is not offered in {'any of ' if not pinned else ''}{scope} {region.name}: never launched{fix}"
        )
    unusable = [z for z in zones if not any(z in found for found in usable.values())]
    if unusable:
        report.warnings.append(
            f"no type of this pool is offered in {', '.join(unusable)}: pods bound to those zones (zonal volumes, "
            "topology spread) get no GPU node there"
        )
    for other, found in region.elsewhere.items():
        report.notes.append(f"{other}: {len(set(types) & found)} of {len(types)} types offered")
    return [t for t in types if usable[t]]


def set_first(path: str, instance_type: str) -> str:
    return f"set --path '{path}[0]' {instance_type}"


def run_checks(
    aws: Aws, cfg: StackConfig, compare: list[str], config_target: str = ""
) -> tuple[Region, list[PoolReport]]:
    """Every check of every pool. Raises ConfigError only for what `pulumi up` would refuse (a pinned zone the
    region lacks); everything else ends up in the reports. `config_target` (`--stack NAME`, `--config-file PATH`)
    goes into every `pulumi config` command the advice gives."""
    region = Region(cfg.region, config_target=config_target)
    pools = cfg.effective_gpu_pools
    with aws.check():
        region_guarded(region, "zones", discover_zones, aws, cfg, region)
    wanted = sorted({t for p in pools for t in [*pool_types(p), *alternatives(pool_types(p))[:MAX_ALTERNATIVES]]})
    region_guarded(region, "offerings", discover_offerings, aws, region, wanted, compare)
    spot_role = spot_role_finding(aws, cfg, region) if any("spot" in p.capacity_types for p in pools) else None
    reports = []
    for index, pool in enumerate(pools):
        report = PoolReport(pool.name, pool_types(pool), list(pool.capacity_types), pool.most_gpus)
        report.skipped += region.skipped
        launchable = guarded(report, "offerings", check_offerings, cfg, index, pool, region, report)
        launchable = report.instance_types if launchable is None and not report.blocking else launchable or []
        if launchable:
            with aws.check():
                guarded(report, "quota", check_quotas, aws, region.name, pool, launchable, report, region.quota_cache)
            if "spot" in pool.capacity_types:
                guarded(report, "Spot market", check_spot, aws, cfg, index, pool, region, launchable, compare, report)
        if "spot" in pool.capacity_types and spot_role:
            kind, message = spot_role
            if message:
                getattr(report, kind).append(message)
            if kind != "skipped":
                report.checked.add("spot service-linked role")
        reports.append(report)
    return region, reports


def guarded(report: PoolReport, label: str, check: Any, *args: Any) -> Any:
    """Run one check; an answer it could not read (a missing key, an odd type) is a reason it could not run, never
    a traceback. Skip (the AWS call's own reasons) is handled inside the checks."""
    try:
        return check(*args)
    except Skip as skip:
        report.skipped.append(f"{label}: {skip}")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        report.skipped.append(f"{label}: unexpected answer from AWS ({type(error).__name__}: {error})")
    return None


def region_guarded(region: Region, label: str, discover: Any, *args: Any) -> None:
    """A region-wide discovery whose answer could not be read: a reason every pool reports, never a traceback."""
    try:
        discover(*args)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        region.skipped.append(f"{label}: unexpected answer from AWS ({type(error).__name__}: {error})")


SPOT_ROLE = "AWSServiceRoleForEC2Spot"


def spot_role_finding(aws: Aws, cfg: StackConfig, region: Region) -> tuple[str, str]:
    """Whether the account has the Spot service-linked role Karpenter's Spot launches need (iam:GetRole; EC2 user
    guide, "Service-linked role for Spot Instance requests"). Returns which list of a Spot pool's report gets which
    message ("" when the role is there)."""
    try:
        with aws.check():
            aws.call("iam", cfg.region, "GetRole", RoleName=SPOT_ROLE)
    except Skip as skip:
        if "NoSuchEntity" not in str(skip):
            return "skipped", f"spot service-linked role: {skip}"
        if cfg.create_spot_service_linked_role:
            return "notes", f"the account has no {SPOT_ROLE}; this stack creates it (createSpotServiceLinkedRole)"
        return (
            "warnings",
            f"the account has no {SPOT_ROLE}, without which every Spot launch fails: "
            f"`{region.config('set createSpotServiceLinkedRole true')}` (or `aws iam create-service-linked-role "
            "--aws-service-name spot.amazonaws.com`)",
        )
    return "checked", ""
