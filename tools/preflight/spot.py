"""The Spot market of one pool: the latest Spot price per type and zone, and Spot placement scores per zone (and
per region with --regions), with a plain recommendation. EC2 scores requests of fewer than three types low, and
may limit new request configurations per 24 hours: at most 2 + MAX_CANDIDATES score calls per pool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infra.catalog.gpus import CATALOG
from tools.preflight.aws import Aws, Skip
from tools.preflight.pooltypes import alternatives, type_list_path
from tools.preflight.quotas import instances_for
from tools.preflight.report import listed

LOW_SCORE = 3  # 1-10; at or below this a Spot request is unlikely to be fulfilled now
MAX_CANDIDATES = 3
MIN_TYPES = 3  # EC2: "If you specify one or two instance types ... the returned placement score will always be low"
PRODUCTS = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]


def target_capacity(gpu_limit: int, types: list[str]) -> int:
    """Instances for the pool's gpuLimit with its largest type (one unit per instance)."""
    return instances_for(gpu_limit, max(types, key=lambda t: CATALOG[t].gpu_count))


def latest_prices(aws: Aws, region: Any, types: list[str]) -> dict[str, dict[str, float]]:
    # EC2 API reference, DescribeSpotPriceHistory: given a start and end time it "also returns the last price change
    # before the start time, which is the effective price as of the start time": start = end = now is the price now.
    now = datetime.now(UTC)
    rows = aws.pages(
        "ec2",
        region.name,
        "DescribeSpotPriceHistory",
        "SpotPriceHistory",
        InstanceTypes=types,
        ProductDescriptions=PRODUCTS,
        StartTime=now,
        EndTime=now,
        MaxResults=1000,
    )
    latest: dict[tuple[str, str], tuple[Any, float]] = {}
    for row in rows:
        zone = row.get("AvailabilityZoneId") or region.zone_ids.get(row.get("AvailabilityZone", ""), "")
        zone = zone or row.get("AvailabilityZone", "?")
        key = (row["InstanceType"], zone)
        stamp = row.get("Timestamp")
        if key not in latest or (stamp is not None and latest[key][0] is not None and stamp > latest[key][0]):
            latest[key] = (stamp, float(row["SpotPrice"]))
    prices: dict[str, dict[str, float]] = {}
    for (name, zone), (_, price) in sorted(latest.items()):
        if region.zones is None or zone in region.zones:
            prices.setdefault(name, {})[zone] = price
    return prices


def scores(aws: Aws, region: str, types: list[str], capacity: int, single_zone: bool, regions: list[str]) -> dict:
    found = aws.pages(
        "ec2",
        region,
        "GetSpotPlacementScores",
        "SpotPlacementScores",
        InstanceTypes=types,
        TargetCapacity=capacity,
        TargetCapacityUnitType="units",
        SingleAvailabilityZone=single_zone,
        RegionNames=regions,
    )
    key = "AvailabilityZoneId" if single_zone else "Region"
    return {row[key]: int(row["Score"]) for row in found if key in row}


def check_spot(
    aws: Aws, cfg: Any, index: int, pool: Any, region: Any, types: list[str], compare: list[str], report: Any
) -> None:
    _prices(aws, region, types, report)
    capacity = target_capacity(pool.most_gpus, types)
    zones = set(region.zones or ())
    try:
        with aws.check():
            found = scores(aws, region.name, types, capacity, True, [region.name])
    except Skip as skip:
        report.skipped.append(f"placement scores: {skip}")
        return
    by_zone = {z: s for z, s in found.items() if not zones or z in zones}
    report.placement_scores = {"target_capacity": capacity, "zones": by_zone}
    report.checked.add("placement scores")
    best = max(by_zone.values(), default=0)
    scored = ", ".join(f"{z} {s}" for z, s in sorted(by_zone.items()))
    report.notes.append(f"Spot placement scores for {capacity} instance(s), per zone: {scored or 'none returned'}")
    advice = []
    if len(types) < MIN_TYPES:
        advice.append(
            f"only {len(types)} type(s): EC2 scores fewer than {MIN_TYPES} types low, and Spot has few "
            "capacity pools to choose from"
        )
    advice += _add_type_advice(aws, cfg, index, pool, region, types, capacity, best, zones, report)
    advice += _region_advice(aws, region, types, capacity, compare, report)
    if by_zone and best <= LOW_SCORE:
        report.warnings.append(
            f"Spot for {capacity} instance(s) is unlikely now: best zone score {best}/10"
            + (f"; {'; '.join(advice)}" if advice else "")
        )
    else:
        report.notes += advice


def _prices(aws: Aws, region: Any, types: list[str], report: Any) -> None:
    try:
        with aws.check():
            report.spot_prices = latest_prices(aws, region, types)
    except Skip as skip:
        report.skipped.append(f"spot prices: {skip}")
        return
    report.checked.add("spot prices")
    cheapest = sorted(
        (min(by_zone.values()), name, min(by_zone, key=by_zone.get), len(by_zone))
        for name, by_zone in report.spot_prices.items()
    )
    if cheapest:
        shown = [f"{name} ${price:.4f}/h in {zone} ({zones} zone(s))" for price, name, zone, zones in cheapest]
        report.notes.append(f"Spot price now, cheapest first: {listed(shown)}")
    unpriced = [t for t in types if t not in report.spot_prices]
    if unpriced:
        report.warnings.append(
            f"no current Spot price for {', '.join(unpriced)} in the stack's zones: Spot may not be sold for them here"
        )


def _add_type_advice(
    aws: Aws,
    cfg: Any,
    index: int,
    pool: Any,
    region: Any,
    types: list[str],
    capacity: int,
    best: int,
    zones: set[str],
    report: Any,
) -> list[str]:
    """Score the pool plus one alternative type (same GPU, offered here); advise the best if it scores higher."""
    path = type_list_path(cfg, index, pool)
    if path is None or best > LOW_SCORE:
        return []
    offered = region.offered or {}
    candidates = [a for a in alternatives(types) if region.offered is None or offered.get(a, set()) & zones]
    results: dict[str, int] = {}
    try:
        with aws.check():
            for candidate in candidates[:MAX_CANDIDATES]:
                found = scores(aws, region.name, [*types, candidate], capacity, True, [region.name])
                results[candidate] = max((s for z, s in found.items() if not zones or z in zones), default=0)
    except Skip as skip:
        report.skipped.append(f"placement scores with an added type: {skip}")
    if results:
        report.placement_scores["with_added_type"] = results
    better = [c for c in results if results[c] > best]
    if not better:
        return []
    top = max(better, key=lambda c: results[c])
    command = region.config(f"set --path '{path}[{len(pool.instance_types)}]' {top}")
    return [f"add {top}: scores {results[top]} vs {best} (`{command}`)"]


def _region_advice(aws: Aws, region: Any, types: list[str], capacity: int, compare: list[str], report: Any) -> list:
    if not compare:
        return []
    try:
        with aws.check():
            by_region = scores(aws, region.name, types, capacity, False, [region.name, *compare])
    except Skip as skip:
        report.skipped.append(f"placement scores across regions: {skip}")
        return []
    report.placement_scores["regions"] = by_region
    own = by_region.get(region.name, 0)
    better = sorted((r for r, s in by_region.items() if s > own), key=lambda r: -by_region[r])
    return [f"{better[0]} scores higher ({by_region[better[0]]} vs {own})"] if better else []
