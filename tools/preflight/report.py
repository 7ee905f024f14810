"""A pool's findings, its verdict, and the two outputs: text for people, one JSON object for tools."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

READY, WARNINGS, BLOCKED, UNCHECKED = "ready", "ready with warnings", "blocked", "unchecked"
EXIT_OK, EXIT_CONFIG, EXIT_BLOCKED = 0, 2, 3
LISTED = 6  # names shown in one message; the JSON lists them all


def listed(names: list[str]) -> str:
    """At most LISTED names, then how many more: an attribute-selected pool can match 20+ types."""
    shown = ", ".join(names[:LISTED])
    return f"{shown} and {len(names) - LISTED} more" if len(names) > LISTED else shown


@dataclass
class PoolReport:
    name: str
    instance_types: list[str]
    capacity_types: list[str]
    gpu_limit: int
    zones: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    offerings: dict[str, list[str]] = field(default_factory=dict)
    quotas: list[dict[str, Any]] = field(default_factory=list)
    spot_prices: dict[str, dict[str, float]] = field(default_factory=dict)
    placement_scores: dict[str, Any] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)

    @property
    def verdict(self) -> str:
        """blocked > ready with warnings > ready; 'unchecked' when no check could run (unknown is not blocked)."""
        if self.blocking:
            return BLOCKED
        if self.warnings:
            return WARNINGS
        return READY if self.checked else UNCHECKED

    def as_json(self) -> dict[str, Any]:
        """Every field, the verdict second, `checked` sorted."""
        return {"name": self.name, "verdict": self.verdict, **asdict(self), "checked": sorted(self.checked)}


def exit_code(reports: list[PoolReport]) -> int:
    return EXIT_BLOCKED if any(r.verdict == BLOCKED for r in reports) else EXIT_OK


def as_json(stack: str, region: str, zones: list[str], regions: list[str], reports: list[PoolReport]) -> str:
    document = {
        "stack": stack,
        "region": region,
        "zones": zones,
        "regions_compared": regions,
        "pools": [r.as_json() for r in reports],
        "exit_code": exit_code(reports),
    }
    return json.dumps(document, indent=2)


def as_text(stack: str, region: str, zones: list[str], regions: list[str], reports: list[PoolReport]) -> str:
    where = f"zones {', '.join(zones)}" if zones else "zones unknown"
    compared = f"; compared with {', '.join(regions)}" if regions else ""
    lines = [
        f"Capacity preflight of stack '{stack}' in {region} ({where}{compared}). Spot capacity changes by the "
        "minute: this is now, not a promise."
    ]
    for r in reports:
        lines.append("")
        lines.append(
            f"{r.name}: {r.verdict.upper()} ({', '.join(r.capacity_types)}; at most {r.gpu_limit} GPUs; "
            f"types: {', '.join(r.instance_types)})"
        )
        lines += [f"  blocking: {m}" for m in r.blocking]
        lines += [f"  warning:  {m}" for m in r.warnings]
        lines += [f"  skipped:  {m}" for m in r.skipped]
        lines += [f"  note:     {m}" for m in r.notes]
    counts = {v: sum(r.verdict == v for r in reports) for v in (READY, WARNINGS, BLOCKED, UNCHECKED)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    pools = f"{len(reports)} pool" if len(reports) == 1 else f"{len(reports)} pools"
    lines += ["", f"{pools}: {summary}; exit {exit_code(reports)}"]
    return "\n".join(lines)
