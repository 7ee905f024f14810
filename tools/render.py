"""Offline render: run the real program under the mock engine and write a plan a reviewer can read.

    uv run python -m tools.render --stack dev --out DIR [--config-file PATH] [--chart-dir CHARTS]

Writes DIR/resources.json (every registered resource), DIR/outputs.json (the stack outputs), DIR/kubernetes/*.yaml
(every Kubernetes object the program would apply) and DIR/helm/*.yaml (every Helm release). Bad config: exit 2, one
message, nothing written. DIR must be new, empty or an earlier render's (tools/output_folder.py); else exit 2.
With --chart-dir, also DIR/charts/<release>.yaml from the real `helm template` (see tools/charts.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from infra.catalog.kubernetes_versions import today as current_date
from infra.config import ConfigError, parse_config
from tools.charts import existing_dir, render_charts
from tools.output_folder import OutputFolder, OutputFolderError
from tools.render_files import (
    kubernetes_objects,  # noqa: F401 (tests read the objects through render)
    stack_critical_path,
    write_outputs,
)
from tools.stack_files import (
    StackFileError,
    add_stack_arguments,
    deploy_advice,
    read_stack_file,
    source_label,
    stack_arguments,
    stack_file,
    stack_name,
)
from tools.stranding_report import closed_cell, stranding_lines

ROOT = Path(__file__).resolve().parent.parent
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"


class UnsupportedVersionError(ValueError):
    """The stack's Kubernetes version is past EKS extended support: render refuses it (the program only warns)."""


def kubernetes_status(cfg: Any, today: date) -> str:
    """The version's support status line under the support type the stack sends; raises UnsupportedVersionError past
    extended support and ConfigError for STANDARD past standard support (infra/config/cluster.py dated_problems)."""
    from infra.catalog.kubernetes_versions import ENDED, VERSIONS, ended_message, status_line
    from infra.config.cluster import dated_problems

    if VERSIONS[cfg.kubernetes_version].status(today) == ENDED:
        raise UnsupportedVersionError(ended_message(cfg.kubernetes_version))
    problems = dated_problems(cfg, today)
    if problems:
        raise ConfigError(problems)
    return status_line(cfg.kubernetes_version, today, cfg.kubernetes_support_type)


def observability_line(cfg: Any, run: Any) -> str:
    """Whether the CloudWatch add-on, the dcgm-exporter, dashboard and alarms are on, and what they cost (README,
    Observability and GPU utilization). The alarms are counted from what the program registered."""
    if not cfg.observability:
        return "Observability: off (observability false): no CloudWatch add-on, exporter, dashboard or alarm"
    from infra.cloudwatch.addon import OBSERVABILITY  # loaded once, with the program

    prices = OBSERVABILITY["prices"]
    logs = (
        f"container logs shipped (${prices['logs_ingestion_per_gb_usd']:.2f}/GB)"
        if cfg.observability_container_logs
        else "no container logs"
    )
    alarms = len(run.of_type(ALARM))
    return (
        "Observability: on: CloudWatch add-on (Container Insights; its own DCGM exporter off), dcgm-exporter on the "
        f"node agent's DCGM engine (GPU metrics ${prices['custom_metric_per_month_usd']:.2f}/metric-month); {logs}; "
        f"dashboard (${prices['dashboard_per_month_usd']:.2f}/month) in OUT/dashboard.json; "
        f"{plural(alarms, 'alarm')} (${prices['alarm_per_month_usd']:.2f}/month each); see README, Observability"
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _gpus(bound: int | None) -> str:
    return "unbounded" if bound is None else str(bound)


def pool_table_rows(cfg: Any) -> list[tuple[str, ...]]:
    """Which pod lands where: per pool, in the order Karpenter tries them (infra/gpu/placement.py), the resource its
    pods request, the taints they must tolerate, weight, capacity types, and the whole GPUs its limits allow before
    and after nodes initialize and in one scheduling pass (infra/gpu/limits.py)."""
    from infra.catalog.gpus import EFA_RESOURCE
    from infra.gpu.limits import pool_bound
    from infra.gpu.pools import pool_taints, requested_resource
    from infra.gpu.scheduling import in_karpenters_order
    from infra.node_pools import stack_offers

    gpu_pools = {pool.name: pool for pool in cfg.effective_gpu_pools}
    gpus_header = "GPUs before / after init / one batch"
    closed = "cannot strand it"
    rows = [("pool", "kind", "pods request", "and tolerate", "weight", "capacity", gpus_header, closed)]
    offers = in_karpenters_order(stack_offers(cfg))
    # Static pools last: Karpenter never launches one for a pod (their weight column says so).
    for offer in [o for o in offers if not o.static] + [o for o in offers if o.static]:
        pool = gpu_pools.get(offer.name)
        if pool is None:
            rows.append(
                (
                    offer.name,
                    "general",
                    "cpu, memory",
                    "-",
                    str(offer.weight),
                    ", ".join(offer.capacity_types),
                    "-",
                    "-",
                )
            )
            continue
        bound = pool_bound(pool)
        taints = ", ".join(f"{t['key']}={t['value']}:{t['effect']}" for t in pool_taints(pool))
        phases = (bound.before_initialization, bound.after_initialization, bound.one_batch)
        gpus = f"{' / '.join(_gpus(b) for b in phases)} ({bound.enforced_by})"
        requests = requested_resource(pool) + (f", {EFA_RESOURCE}" if pool.efa else "")
        capacity = ", ".join(pool.capacity_types) + (f" in {pool.zone}" if pool.zone else "")
        weight = "static" if offer.static else str(offer.weight)
        rows.append((offer.name, bound.kind, requests, taints, weight, capacity, gpus, closed_cell(pool)))
    return rows


def pool_table_lines(cfg: Any) -> list[str]:
    from infra.gpu.placement import NOT_MODELLED

    rows = pool_table_rows(cfg)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "Which pod lands where (pools in the order Karpenter tries them; a pod needs the request and every toleration):"
    ]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"  The model does not cover: {NOT_MODELLED} (README).")
    return lines + stranding_lines(cfg) + reservation_lines(cfg)


def reservation_lines(cfg: Any) -> list[str]:
    """What each pool with reservations does when they end or fill (README, Capacity Blocks)."""
    lines = []
    for pool in cfg.effective_gpu_pools:
        if "reserved" not in pool.capacity_types:
            continue
        on_demand = "on-demand" in pool.capacity_types
        if pool.static and on_demand:
            lines.append(
                f"  warning: static pool {pool.name} has reserved and on-demand: when its reservation ends (a Capacity "
                f"Block: Karpenter deletes its nodes 40 minutes before the end), Karpenter relaunches all "
                f"{pool.replicas} nodes On-Demand and keeps them; use capacityTypes [reserved] and end the pool with "
                "replicas 0 (README, Capacity Blocks)"
            )
        elif pool.static:
            lines.append(
                f"  {pool.name}: static on its reservation; after the reservation ends every launch fails until "
                "replicas is 0 or the pool is removed (README, Capacity Blocks)"
            )
        elif on_demand:
            lines.append(f"  {pool.name}: falls back to On-Demand when its reservations are used up or have ended")
        if pool.placement_group:
            lines.append(
                f"  {pool.name}: a reservation bought outside its placement group is used inside it but reserves no "
                "room there (EC2 placement-group rules); a Capacity Block needs no placement group"
            )
    return lines


def summary(run: Any, stack: str, region: str, zones: Sequence[str] = (), source: str = "") -> str:
    """`source`: the file read, when it is not the stack's own Pulumi.<stack>.yaml."""
    counts = Counter(r.type for r in run.registrations)
    width = max(map(len, counts)) if counts else 10
    where = f"{source}, {region}" if source else region
    lines = [f"Offline render of stack '{stack}' ({where}): nothing was contacted; ids and ARNs are placeholders."]
    lines += [f"  {type_:<{width}}  {n:>3}" for type_, n in sorted(counts.items())]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>3}")
    lines += zones
    lines += critical_path_lines(run)
    lines += access_lines(run)
    return "\n".join(lines)


def gpu_pool_lines(cfg: Any, stack_args: str) -> list[str]:
    """Per GPU pool: the catalog's instance types its requirements match today, those without local NVMe, and the
    whole GPUs its limits allow before and after nodes initialize (infra/gpu/limits.py). The catalog (Karpenter's
    instance-type reference) has no per-region facts, so region availability is left to the preflight, which render
    never runs: it calls AWS."""
    from infra.catalog.gpus import CATALOG
    from infra.gpu.pools import node_class_of
    from infra.gpu.recovery import recovery_lines

    lines = ["GPU pools (instance types their requirements match in infra/data/gpu_catalog.json today):"]
    for pool in cfg.effective_gpu_pools:
        types = pool.matched_types
        sharing = f"; time-sliced x{pool.time_slicing_replicas}" if pool.time_slicing_replicas else ""
        sharing += "; MIG" if pool.mig_profile else ""
        lines.append(
            f"  {pool.name} (class {node_class_of(pool)}; {', '.join(pool.capacity_types)}; "
            f"at most {pool.gpu_limit} GPUs{sharing}): {plural(len(types), 'type')}: {', '.join(types)}"
        )
        no_nvme = [t for t in types if not CATALOG[t].local_nvme_gib]
        if no_nvme:
            lines.append(
                f"    no local NVMe: {', '.join(no_nvme)}: their images live on the EBS data volume "
                f"(gpuDataVolumeSize = {cfg.gpu_data_volume_size} GiB), so size it for your images"
            )
    lines += pool_table_lines(cfg)
    lines += recovery_lines(cfg)
    lines.append(
        "  Offered in this region's zones, within vCPU quota, Spot capacity now: not known offline; "
        f"ask AWS with `uv run python -m tools.preflight {stack_args}`"
    )
    return lines


def critical_path_lines(run: Any) -> list[str]:
    from tools.critical_path import summary_lines

    return summary_lines(stack_critical_path(run))


def zone_lines(cfg: Any) -> list[str]:
    """Which zones the subnets use and which the control plane leaves out: the program's own zone plan
    (infra/zones.py plan_zones) over the zones the offline engine answers for the region."""
    from infra.zones import CONTROL_PLANE_EXCLUSION_REASON, plan_zones
    from tools.offline import region_zones

    names, zone_ids = region_zones(cfg.region, cfg.availability_zones)
    plan = plan_zones(names, zone_ids, cfg.availability_zones)
    nodes, control_plane = [z.id for z in plan.zones], [z.id for z in plan.control_plane]
    lines = [f"Zones (by ID): nodes in {', '.join(nodes)}; control plane in {', '.join(control_plane)}"]
    lines += [
        f"  left out of the control plane: {z.id}: {CONTROL_PLANE_EXCLUSION_REASON}"
        for z in plan.excluded_from_control_plane
    ]
    return lines


def access_lines(run: Any) -> list[str]:
    """Who can use the cluster (access entries of infra/access.py) and whether its API endpoint is private only,
    read from the registered resources."""
    from infra.access import LEVELS

    entries = [r for r in run.of_type("aws:eks/accessEntry:AccessEntry") if r.inputs.get("type") == "STANDARD"]
    levels = Counter(
        LEVELS.get(str(r.inputs.get("policyArn", "")).rsplit("/", 1)[-1], "other")
        for r in run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    )
    if entries:
        # In LEVELS' order, not the order the engine happened to register the associations in.
        order = [*LEVELS.values(), "other"]
        granted = ", ".join(f"{levels[level]} {level}" for level in order if levels[level])
        lines = [f"Access: the deployer (cluster admin) and {len(entries)} access entries ({granted})"]
    else:
        lines = ["Access: only the deployer (cluster admin); clusterAdmins and clusterViewers add others (README)"]
    clusters = run.of_type("eks:index:Cluster")
    if clusters and clusters[0].inputs.get("endpointPublicAccess") is False:
        lines.append(
            "API endpoint: private only: Helm releases and Karpenter objects can only be applied from inside the VPC "
            "(see README, Private API endpoint)"
        )
    elif clusters and "0.0.0.0/0" in (clusters[0].inputs.get("publicAccessCidrs") or []):
        lines.append(
            "API endpoint: public and open to 0.0.0.0/0 (authenticated by IAM); narrow it with publicAccessCidrs or "
            "endpointPublicAccess false (see README, Private API endpoint)"
        )
    return lines


def main(argv: Sequence[str] | None = None, today: date | None = None) -> int:
    """`today` (the date support windows are read against) is injected by tests; the command uses the clock."""
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.splitlines()[0])
    add_stack_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: render-out/<stack>)")
    parser.add_argument(
        "--chart-dir",
        type=existing_dir,
        help="folder of <chart>-<version>.tgz archives: also render each Helm release into OUT/charts/ (helm template)",
    )
    args = parser.parse_args(argv)
    config_file = stack_file(args)
    stack = stack_name(args)
    out = args.out or ROOT / "render-out" / stack
    try:
        folder = OutputFolder.claim(
            out, checkout=ROOT, example=f"render-out/{stack}"
        )  # reads only: nothing is deleted before the program ran
    except OutputFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from tools.offline import OfflineRegionError, run_program  # after argument errors: the SDK import is slow

    try:
        raw = read_stack_file(config_file)
        cfg = parse_config(raw)  # fails before the engine starts
        today = today or current_date()
        version_line = kubernetes_status(cfg, today)
        run = run_program(raw, stack=stack, today=today)
    except (StackFileError, ConfigError, OfflineRegionError, UnsupportedVersionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_outputs(run, folder)
    print(summary(run, stack, cfg.region, zone_lines(cfg), source_label(args)))
    print(version_line)
    for warning in run.warnings:  # the program's own warnings, each once: its version warning is the line above
        if f"warning: {warning}" != version_line:
            print(f"warning: {warning}")
    print(observability_line(cfg, run))
    print("\n".join(gpu_pool_lines(cfg, stack_arguments(args))))
    files = ["resources.json", "critical-path.json", "outputs.json", *(["dashboard.json"] * cfg.observability)]
    print(f"Wrote {', '.join(f'{out}/{f}' for f in [*files, 'kubernetes/', 'helm/'])}")
    print(
        f"Next: check capacity with `uv run python -m tools.preflight {stack_arguments(args)}`, then "
        f"{deploy_advice(args)} (README, Deploy)"
    )
    if args.chart_dir is not None:  # tools/charts.py: what each problem prints and which ones fail the run
        return render_charts(out, args.chart_dir, kube_version=cfg.kubernetes_version, write=folder.write_text)
    return 0


def exit_now(code: int) -> None:
    """Leave without interpreter teardown: the Pulumi SDK's event loop, left open when the program raised a
    ConfigError, would print a traceback as it is collected. Everything was written and closed already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    # `render ... | head`: end quietly when the reader goes away, as Unix tools do (no BrokenPipeError traceback).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    exit_now(main())
