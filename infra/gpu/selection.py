"""A GPU pool's selection as Karpenter requirements: either a list of instance types, or GPU attributes that become
requirements on Karpenter's own labels (so new instance types with a matching GPU are picked up, never a frozen list).
"""

from __future__ import annotations

from typing import Any, Protocol

from infra.gpu.catalog import LABEL, reported_memory_floor_mib

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
# Every GPU pool runs the x86_64 Bottlerocket NVIDIA variant, as the system nodes do.
ARCH = "amd64"


class Selection(Protocol):
    instance_types: tuple[str, ...]
    gpu_names: tuple[str, ...]
    gpu_count_min: int | None
    gpu_count_max: int | None
    gpu_memory_min_gib: int | None
    families: tuple[str, ...]


def requirement(key: str, operator: str, *values: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": [str(v) for v in values]}


def selection_requirements(pool: Selection) -> list[dict[str, Any]]:
    """Requirements on instance-type labels only (capacity type, arch and OS are added by the pool spec)."""
    if pool.instance_types:
        return [requirement(INSTANCE_TYPE, "In", *pool.instance_types)]
    found = []
    if pool.gpu_names:
        found.append(requirement(f"{LABEL}gpu-name", "In", *pool.gpu_names))
    if pool.families:
        found.append(requirement(f"{LABEL}family", "In", *pool.families))
    # Gt/Lt are exclusive and take one integer (the CRD's rule). At least one whole GPU: fractional g6f types report
    # instance-gpu-count 0 and could never satisfy an nvidia.com/gpu request.
    found.append(requirement(f"{LABEL}gpu-count", "Gt", max(pool.gpu_count_min or 1, 1) - 1))
    if pool.gpu_count_max is not None:
        found.append(requirement(f"{LABEL}gpu-count", "Lt", pool.gpu_count_max + 1))
    if pool.gpu_memory_min_gib is not None:
        found.append(requirement(f"{LABEL}gpu-memory", "Gt", reported_memory_floor_mib(pool.gpu_memory_min_gib)))
    return found


def platform_requirements() -> list[dict[str, Any]]:
    return [requirement("kubernetes.io/arch", "In", ARCH), requirement("kubernetes.io/os", "In", "linux")]
