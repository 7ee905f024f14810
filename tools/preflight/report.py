"""A pool's findings, its verdict, and the two outputs: text for people, one JSON object for tools."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

READY, WARNINGS, BLOCKED, UNCHECKED = "ready", "ready with warnings", "blocked", "unchecked"
# 0: every pool checked and able to launch; 2: config error; 3: a pool is blocked; 4: nothing blocked, but some checks
# could not run (no credentials, denied, an endpoint that did not answer): a CI gate must not read that as "ready".
EXIT_OK, EXIT_CONFIG, EXIT_BLOCKED, EXIT_UNCHECKED = 0, 2, 3, 4
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


@dataclass
class PinReport:
    """The stack's pins AWS can confirm before a deploy (tools/preflight/pins.py): add-on versions and configuration,
    Bottlerocket images, the EFA security group rules. Judged like a pool: a pin AWS does not have blocks."""

    name: str = "pins"
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    addons: dict[str, str] = field(default_factory=dict)  # add-on -> the version checked
    images: dict[str, str | None] = field(default_factory=dict)  # SSM parameter -> AMI ID (None: AWS has none)
    checked: set[str] = field(default_factory=set)
    config_target: str = ""  # `--stack NAME` / `--config-file PATH`: what the advice's `pulumi config` edits

    def config_command(self, command: str) -> str:
        """`pulumi config <command>` for the stack file read (as checks.Region.config)."""
        return f"pulumi config {command} {self.config_target}".rstrip()

    verdict = PoolReport.verdict

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, **asdict(self), "checked": sorted(self.checked)}


Report = PoolReport | PinReport


def exit_code(reports: list[Report], allow_unchecked: bool = False) -> int:
    if any(r.verdict == BLOCKED for r in reports):
        return EXIT_BLOCKED
    if not allow_unchecked and any(r.skipped or r.verdict == UNCHECKED for r in reports):
        return EXIT_UNCHECKED
    return EXIT_OK


def split_skip(message: str) -> tuple[str, str]:
    """'offerings: no usable AWS credentials ...' -> ('offerings', 'no usable AWS credentials ...')."""
    label, _, reason = message.partition(": ")
    return (label, reason) if reason else ("check", label)


def reasons(reports: list[Report]) -> dict[str, list[str]]:
    """Each distinct reason a check could not run -> the checks (pool: check) it stopped, in first-seen order."""
    found: dict[str, list[str]] = {}
    for r in reports:
        for message in r.skipped:
            label, reason = split_skip(message)
            checks = found.setdefault(reason, [])
            if f"{r.name}: {label}" not in checks:
                checks.append(f"{r.name}: {label}")
    return found


@dataclass(frozen=True)
class Preflight:
    """One run's findings, as both outputs show them."""

    stack: str
    region: str
    zones: list[str]
    regions: list[str]
    reports: list[PoolReport]
    allow_unchecked: bool = False
    pins: PinReport | None = None
    source: str = ""  # the stack file read, when it is not the stack's own Pulumi.<stack>.yaml

    @property
    def judged(self) -> list[Report]:
        """Everything the exit code and the reasons are about: the pins first, then each pool."""
        return [*([self.pins] if self.pins else []), *self.reports]

    @property
    def exit_code(self) -> int:
        return exit_code(self.judged, self.allow_unchecked)


def as_json(run: Preflight) -> str:
    document = {
        "stack": run.stack,
        "config_file": run.source or None,
        "region": run.region,
        "zones": run.zones,
        "regions_compared": run.regions,
        "pins": run.pins.as_json() if run.pins else None,
        "pools": [r.as_json() for r in run.reports],
        "not_checked": [{"reason": reason, "checks": checks} for reason, checks in reasons(run.judged).items()],
        "exit_code": run.exit_code,
    }
    return json.dumps(document, indent=2)


def as_text(run: Preflight) -> str:
    stack, region, zones, regions, reports = run.stack, run.region, run.zones, run.regions, run.reports
    why = list(reasons(run.judged))
    numbered = {reason: i for i, reason in enumerate(why, 1)}
    where = f"zones {', '.join(zones)}" if zones else "zones unknown"
    compared = f"; compared with {', '.join(regions)}" if regions else ""
    source = f" ({run.source})" if run.source else ""
    lines = [
        f"Capacity preflight of stack '{stack}'{source} in {region} ({where}{compared}). Spot capacity changes by "
        "the minute: this is now, not a promise."
    ]
    if run.pins:
        pins = run.pins
        lines += ["", f"Pins AWS confirms before a deploy: {pins.verdict.upper()} ({', '.join(sorted(pins.checked))})"]
        lines += _findings(pins, numbered)
    for r in reports:
        lines.append("")
        lines.append(
            f"{r.name}: {r.verdict.upper()} ({', '.join(r.capacity_types)}; at most {r.gpu_limit} GPUs; "
            f"types: {', '.join(r.instance_types)})"
        )
        lines += _findings(r, numbered)
    if why:
        lines += ["", "Not checked, and why (each reason once):"]
        lines += [f"  [{i}] {reason}" for i, reason in enumerate(why, 1)]
    counts = {v: sum(r.verdict == v for r in reports) for v in (READY, WARNINGS, BLOCKED, UNCHECKED)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    pools = f"{len(reports)} pool" if len(reports) == 1 else f"{len(reports)} pools"
    pins = f"pins {run.pins.verdict}; " if run.pins else ""
    lines += ["", f"{pins}{pools}: {summary}; exit {run.exit_code}"]
    return "\n".join(lines)


def _findings(r: Report, numbered: dict[str, int]) -> list[str]:
    lines = [f"  blocking: {m}" for m in r.blocking]
    lines += [f"  warning:  {m}" for m in r.warnings]
    skipped: dict[int, list[str]] = {}
    for message in r.skipped:
        label, reason = split_skip(message)
        skipped.setdefault(numbered[reason], []).append(label)
    lines += [f"  not checked: {', '.join(labels)} [{n}]" for n, labels in skipped.items()]
    lines += [f"  note:     {m}" for m in r.notes]
    return lines
