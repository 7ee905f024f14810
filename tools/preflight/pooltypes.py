"""A pool's instance types as the preflight sees them, where they live in the config, and same-GPU alternatives."""

from __future__ import annotations

from typing import Any

from infra.catalog.gpus import CATALOG
from infra.catalog.selection import ARCH


def pool_types(pool: Any) -> list[str]:
    """The instance types a pool's requirements resolve to (its list, in config order, or the catalog's matches)."""
    return list(pool.instance_types) or pool.matched_types


def type_list_path(cfg: Any, index: int, pool: Any) -> str | None:
    """The config path of the pool's instance-type list, or None when the pool selects by GPU attributes."""
    if not cfg.gpu_pools:
        return "gpuInstanceTypes"
    return f"gpuPools[{index}].instanceTypes" if pool.instance_types else None


def alternatives(types: list[str]) -> list[str]:
    """Catalog types with the same GPU as the pool's types, not in the pool, closest GPU count first."""
    gpus = {CATALOG[t].gpu_name for t in types}
    most = max(CATALOG[t].gpu_count for t in types)
    found = [
        t.name
        for t in CATALOG.values()
        if t.gpu_name in gpus and t.name not in types and t.arch == ARCH and t.gpu_count >= 1
    ]
    return sorted(found, key=lambda n: (abs(CATALOG[n].gpu_count - most), n))
