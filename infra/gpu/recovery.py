"""How long a Spot interruption takes to recover from, per GPU pool, with and without warm headroom.

Pure: the steps and their seconds live in infra/data/recovery_time.json, each with its source; this module picks the
image-pull figure the stack's pull path gives (an image-cache snapshot on the data volume, the private pull-through
cache, or the public registry) and adds the steps up. The clock starts at the interruption warning; the interrupted
node is gone at the warning's 120 s. With headroom (infra/gpu/headroom.py) the replacement pod is bound by the
kube-scheduler to a node that is already up, so the steps marked `headroom_skips` (launch and boot) drop out; the
image is still pulled, since the buffer's virtual pods never ran on that node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.catalog.data import load_data
from infra.config import GpuPool, StackConfig
from infra.gpu.headroom import price_note, warm_nodes

SNAPSHOT, PRIVATE, PUBLIC = "snapshot", "private", "public"


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    seconds: float
    source: str
    headroom_skips: bool


def image_path(cfg: StackConfig) -> str:
    """Where the replacement node gets the workload's image: the data-volume snapshot when the stack has one, else the
    private pull-through cache when it is on (workloads must use its private names: README, Image pull path)."""
    if cfg.gpu_image_cache_snapshot_id:
        return SNAPSHOT
    return PRIVATE if cfg.image_cache else PUBLIC


def steps(path: str, data: dict[str, Any] | None = None) -> list[Step]:
    """The steps after the warning, in order, with the image-pull figure of `path`."""
    data = data or load_data("recovery_time")
    found = []
    for entry in data["steps"]:
        figure = entry["by_image_path"][path] if "by_image_path" in entry else entry
        title = entry["title"] + (f" ({path})" if "by_image_path" in entry else "")
        found.append(
            Step(entry["id"], title, float(figure["seconds"]), figure["source"], entry.get("headroom_skips", False))
        )
    return found


def warning_seconds(data: dict[str, Any] | None = None) -> float:
    return float((data or load_data("recovery_time"))["warning"]["seconds"])


def total(path_steps: Sequence[Step], headroom: bool) -> float:
    """Seconds from the warning until the replacement runs."""
    return sum(s.seconds for s in path_steps if not (headroom and s.headroom_skips))


@dataclass(frozen=True)
class Recovery:
    pool: str
    cold_seconds: float
    warm_seconds: float
    headroom_gpus: int | None
    headroom_usd_per_hour: float | None

    @property
    def saved_seconds(self) -> float:
        return self.cold_seconds - self.warm_seconds


def pool_recovery(cfg: StackConfig, pool: GpuPool) -> Recovery:
    path_steps = steps(image_path(cfg))
    warm = warm_nodes(pool)
    return Recovery(
        pool.name,
        total(path_steps, headroom=False),
        total(path_steps, headroom=True),
        pool.headroom,
        warm.usd_per_hour if warm else None,
    )


def recovery_lines(cfg: StackConfig) -> list[str]:
    """render's section: per pool, when a replacement runs after a Spot warning, and what headroom costs."""
    path = image_path(cfg)
    lines = [
        f"Spot interruption recovery (warning at 0 s, node gone at {warning_seconds():.0f} s; image pull: {path}; "
        "steps and sources in infra/data/recovery_time.json, README Recovering from a Spot interruption):"
    ]
    for pool in cfg.effective_gpu_pools:
        if "spot" not in pool.capacity_types:
            continue
        r = pool_recovery(cfg, pool)
        line = f"  {pool.name}: replacement running after ~{r.cold_seconds:.0f} s"
        if r.headroom_gpus:
            warm = warm_nodes(pool)
            cost = (
                f"~${warm.usd_per_hour:.2f}/h ({warm.nodes} x {warm.instance_type}; {price_note()})"
                if warm
                else "price unknown (no type of the pool in infra/data/gpu_prices.json)"
            )
            line += (
                f" (with headroom ~{r.warm_seconds:.0f} s); headroom {r.headroom_gpus} GPUs of gpuLimit "
                f"{pool.gpu_limit}, paid while idle: {cost}"
            )
        elif not (pool.time_slicing_replicas or pool.mig_profile):  # headroom keeps whole GPUs warm (config)
            line += f"; with headroom ~{r.warm_seconds:.0f} s (gpuPools[].headroom)"
        lines.append(line)
    return lines if len(lines) > 1 else []
