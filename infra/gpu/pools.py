"""GPU NodePools, their node classes' GPU-specific settings, and time-slicing NodeOverlays, from `GpuPool` config.

Every GPU pool keeps the seed's protections: taint `nvidia.com/gpu=true:NoSchedule`, WhenEmpty consolidation, no
voluntary disruption of busy nodes, `expireAfter: Never`. Pools share the node class `gpu` unless their node
settings differ (device sharing in user data, capacity reservations): then the pool gets its own class `gpu-<pool>`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.catalog.gpus import LABEL
from infra.catalog.selection import platform_requirements, requirement, selection_requirements
from infra.config import PROJECT, GpuPool, StackConfig
from infra.gpu.limits import (
    GPU_RESOURCE,
    MIG,
    SHARED_GPU_RESOURCE,
    TIME_SLICING,
    overlay_gpu_counts,
    pool_kind,
    pool_limits,
)
from infra.gpu.placement import CAPACITY_TYPE, EFA_POOL_LABEL, NODEPOOL_LABEL, ZONE_ID

GPU_CLASS = "gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
# Shared pools carry a taint of their own besides GPU_TAINT: a NodeOverlay only adds capacity, so Karpenter still sees
# whole nvidia.com/gpu on a time-sliced type, and a whole-GPU pod that tolerates only GPU_TAINT would be placed there
# (then never initialize: the node advertises no nvidia.com/gpu) or, on MIG, silently get one partition.
SHARING_TAINT_KEY = f"{PROJECT}/gpu-sharing"
SHARING_TAINT_VALUES = {TIME_SLICING: "time-slicing", MIG: "mig"}
NODEOVERLAY_API_VERSION = "karpenter.sh/v1alpha1"


def pool_taints(pool: GpuPool) -> list[dict[str, str]]:
    """The taints of a GPU pool's nodes: a pod lands there only if it tolerates every one."""
    sharing = SHARING_TAINT_VALUES.get(pool_kind(pool))
    if sharing is None:
        return [dict(GPU_TAINT)]
    return [dict(GPU_TAINT), {"key": SHARING_TAINT_KEY, "value": sharing, "effect": "NoSchedule"}]


def requested_resource(pool: GpuPool) -> str:
    """What a pod of this pool asks for: a whole GPU, a slice (time-slicing) or a MIG partition (nvidia.com/gpu)."""
    return SHARED_GPU_RESOURCE if pool_kind(pool) == TIME_SLICING else GPU_RESOURCE


def exists_tolerations(pools: Iterable[GpuPool]) -> list[dict[str, str]]:
    """What a node agent needs to run on every node of these pools: one `Exists` toleration per taint key and effect
    (any value of that key), each once."""
    tolerations: list[dict[str, str]] = []
    for pool in pools:
        for taint in pool_taints(pool):
            toleration = {"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}
            if toleration not in tolerations:
                tolerations.append(toleration)
    return tolerations


def node_class_ref(node_class: str) -> dict[str, str]:
    """A NodePool's `nodeClassRef` to one of the stack's EC2NodeClasses."""
    return {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class}


def node_class_of(pool: GpuPool) -> str:
    """A pool gets a class of its own when its nodes differ: device sharing in user data, capacity reservations, a
    placement group, or the EFA interfaces of a static pool."""
    own_settings = (
        pool.time_slicing_replicas
        or pool.mig_profile
        or "reserved" in pool.capacity_types
        or pool.placement_group
        or (pool.static and pool.efa)
    )
    return f"{GPU_CLASS}-{pool.name}" if own_settings else GPU_CLASS


def gpu_classes(cfg: StackConfig) -> dict[str, GpuPool | None]:
    """GPU node class name -> the pool whose settings it carries (None for the shared class `gpu`)."""
    classes: dict[str, GpuPool | None] = {}
    for pool in cfg.effective_gpu_pools:
        name = node_class_of(pool)
        classes[name] = None if name == GPU_CLASS else pool
    return classes


def device_plugin_settings(pool: GpuPool | None) -> dict[str, Any]:
    """Bottlerocket `settings.kubelet-device-plugins.nvidia` for a pool's GPU sharing (empty: one pod per GPU)."""
    if pool is None:
        return {}
    if pool.time_slicing_replicas:
        return {
            "device-sharing-strategy": "time-slicing",
            "time-slicing": {
                "replicas": pool.time_slicing_replicas,
                "rename-by-default": True,  # slices are nvidia.com/gpu.shared: a pod asks for a slice explicitly
                "fail-requests-greater-than-one": True,  # more slices of one GPU would not be more GPU
            },
        }
    if pool.mig_profile:
        return {"device-partitioning-strategy": "mig", "mig": {"profile": dict(pool.mig_profile)}}
    return {}


def capacity_reservation_terms(pool: GpuPool | None) -> list[dict[str, Any]]:
    """EC2NodeClass capacityReservationSelectorTerms: an id must be alone in its term (CRD rule); terms are ORed."""
    if pool is None:
        return []
    terms: list[dict[str, Any]] = [{"id": reservation} for reservation in pool.capacity_reservation_ids]
    if pool.capacity_reservation_tags:
        terms.append({"tags": dict(pool.capacity_reservation_tags)})
    return terms


def gpu_pool_spec(pool: GpuPool, cfg: StackConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "spec": {
                "nodeClassRef": node_class_ref(node_class_of(pool)),
                # Several capacity types in one pool: Karpenter prefers reserved, then Spot (price-capacity-
                # optimized across every type and zone the requirements allow), then On-Demand.
                # The seed's order (selection, capacity type, platform): the default plan stays unchanged.
                "requirements": [
                    *selection_requirements(pool),
                    requirement(CAPACITY_TYPE, "In", *pool.capacity_types),
                    *platform_requirements(),
                    # A training pool: every node in one zone (EFA does not cross zones; NCCL rings stay local).
                    *([requirement(ZONE_ID, "In", pool.zone)] if pool.zone else []),
                ],
                "taints": pool_taints(pool),
                # A GPU job may run for days; expiry would force-drain it. Nodes still roll: they are removed
                # once empty, and replacements get the current AMI.
                "expireAfter": "Never",
            }
        },
        # What Karpenter counts the same before and after nodes initialize (infra/gpu/limits.py).
        "limits": pool_limits(pool),
        "disruption": {
            # Only empty nodes are removed, and only after the idle time (longer than a cold image pull).
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": cfg.consolidate_after(pool),
            "budgets": [
                # Busy nodes are never voluntarily disrupted, even if the policy or the AMI changes.
                {"nodes": "0", "reasons": ["Underutilized", "Drifted"]},
                # An idle GPU node is pure cost: remove every one that has been empty for consolidateAfter.
                {"nodes": "100%", "reasons": ["Empty"]},
            ],
        },
    }
    if pool.efa:
        spec["template"]["metadata"] = {"labels": {EFA_POOL_LABEL: "true"}}
    if pool.weight is not None:
        spec["weight"] = pool.weight
    if pool.static:  # static: Karpenter holds this many nodes (infra/gpu/static.py)
        spec["replicas"] = pool.replicas
    return spec


def node_overlays(pool: GpuPool) -> list[tuple[str, dict[str, Any]]]:
    """Time-sliced pools: NodeOverlays telling Karpenter each node offers GPUs x replicas `nvidia.com/gpu.shared`
    (Karpenter cannot know the device plugin's slices), one per GPU count the pool admits (limits.py)."""
    return [
        (
            f"{pool.name}-{count}gpu-slices",
            {
                "requirements": [
                    requirement(NODEPOOL_LABEL, "In", pool.name),
                    requirement(f"{LABEL}gpu-count", "In", count),
                    requirement(f"{LABEL}gpu-manufacturer", "In", "nvidia"),
                ],
                "capacity": {SHARED_GPU_RESOURCE: str(count * pool.time_slicing_replicas)},
            },
        )
        for count in overlay_gpu_counts(pool)
    ]


def uses_node_overlays(cfg: StackConfig) -> bool:
    return any(pool.time_slicing_replicas for pool in cfg.effective_gpu_pools)
