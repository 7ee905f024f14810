"""A GPU pool's selection as Karpenter requirements: either a list of instance types, or GPU attributes that become
requirements on Karpenter's own labels (so new instance types with a matching GPU are picked up, never a frozen list).
"""

from __future__ import annotations

from typing import Any, Protocol

from infra.catalog.gpus import LABEL, MAX_GPUS_PER_INSTANCE, reported_memory_floor_mib

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


def gpu_count_bounds(pool: Selection) -> tuple[int, int]:
    """The GPUs per instance an attribute pool admits, both ends included: at least one whole GPU (fractional g6f
    types report instance-gpu-count 0 and could never satisfy an nvidia.com/gpu request), at most gpuCountMax or
    MAX_GPUS_PER_INSTANCE (a finite range, so time-slicing overlays can cover every count)."""
    return max(pool.gpu_count_min or 1, 1), pool.gpu_count_max or MAX_GPUS_PER_INSTANCE


def selection_requirements(pool: Selection) -> list[dict[str, Any]]:
    """Requirements on instance-type labels only (capacity type, arch and OS are added by the pool spec). Every pool
    requires an NVIDIA GPU: Karpenter gives the Bottlerocket NVIDIA AMI to any type with a GPU count, AMD g4ad
    included (karpenter-provider-aws v1.14.1 pkg/providers/amifamily/types.go: VariantNvidia requires only
    instance-gpu-count Exists)."""
    nvidia = requirement(f"{LABEL}gpu-manufacturer", "In", "nvidia")
    if pool.instance_types:
        return [requirement(INSTANCE_TYPE, "In", *pool.instance_types), nvidia]
    found = []
    if pool.gpu_names:
        found.append(requirement(f"{LABEL}gpu-name", "In", *pool.gpu_names))
    if pool.families:
        found.append(requirement(f"{LABEL}family", "In", *pool.families))
    # Gt/Lt are exclusive and take one integer (the CRD's rule).
    fewest, most = gpu_count_bounds(pool)
    found.append(requirement(f"{LABEL}gpu-count", "Gt", fewest - 1))
    found.append(requirement(f"{LABEL}gpu-count", "Lt", most + 1))
    if pool.gpu_memory_min_gib is not None:
        found.append(requirement(f"{LABEL}gpu-memory", "Gt", reported_memory_floor_mib(pool.gpu_memory_min_gib)))
    return [*found, nvidia]


def platform_requirements() -> list[dict[str, Any]]:
    return [requirement("kubernetes.io/arch", "In", ARCH), requirement("kubernetes.io/os", "In", "linux")]
