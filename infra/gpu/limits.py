"""What a GPU pool's `limits` bound on a real cluster, before and after its nodes initialize.

Karpenter sums, per NodePool, what each node counts (kubernetes-sigs/karpenter v1.14.1
`pkg/controllers/state/statenode.go` Capacity(), L360-374): while a node initializes, its Node's capacity with the
NodeClaim's filling every zero (the NodeClaim's capacity is the instance type's, NodeOverlays applied:
karpenter-provider-aws v1.14.1 `pkg/cloudprovider/cloudprovider.go` L135-140, L449-450); once initialized, only what
the Node advertises; and `nodes: 1` always (`pkg/controllers/state/cluster.go` L805-810). A new node is launched only
if its instance type's capacity fits what the limits leave (`provisioning/scheduling/scheduler.go`
filterByRemainingResources, L1069-1079; `provisioner.go` L471 ExceededBy).

What a GPU node advertises depends on how the pool shares its GPUs (Bottlerocket settings docs,
kubelet-device-plugins 1.25.x and 1.34.x):
- whole GPUs: `nvidia.com/gpu` = GPUs, in both phases;
- time-slicing with rename-by-default: `nvidia.com/gpu.shared` = GPUs x replicas, and no `nvidia.com/gpu`, once
  initialized; before, the instance type's `nvidia.com/gpu` and the overlay's `nvidia.com/gpu.shared`;
- MIG: `nvidia.com/gpu` = GPUs x partitions once initialized; GPUs before.
So each kind is limited by the one resource it counts the same in both phases: `nvidia.com/gpu`,
`nvidia.com/gpu.shared` (gpuLimit x replicas) and, for MIG, where no GPU number is right in both phases, `nodes`
and `cpu`. A node's `cpu` is its vCPUs in both phases: the NodeClaim's is the type's DefaultVCpus
(karpenter-provider-aws v1.14.1 `pkg/providers/instancetype/types.go` L352-354), the Node's the logical CPUs the
kubelet finds, the same number.

One scheduling pass (a batch) is bounded differently: it starts from what the limits leave and subtracts, per new
NodeClaim, the largest capacity among its instance types (`scheduler.go` subtractMax, L1045-1066, called at L786); a
type's capacity has no `nodes` (types.go computeCapacity L336-348), so `nodes` is only checked before the pass
(L709-714) and never counted down inside it: one pass launched 101 NodeClaims past a `nodes` limit
(kubernetes-sigs/karpenter#2915). A MIG pool's `cpu` limit (nodes x the most vCPUs of its types) is what bounds its
batch. Static pools are provisioned by their own controller, which reserves against `nodes`
(`pkg/controllers/static/provisioning/controller.go` L98-100).

This module is the oracle the tests use and what `render` prints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from infra.catalog.gpus import CATALOG, GpuType, largest_gpu_count
from infra.catalog.selection import gpu_count_bounds

GPU_RESOURCE = "nvidia.com/gpu"
# Bottlerocket's time-slicing with rename-by-default (its default) advertises each GPU's slices as this resource, a
# new extended resource next to nvidia.com/gpu (bottlerocket settings docs, 1.25.x kubelet-device-plugins).
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
NODES = "nodes"
CPU = "cpu"
WHOLE, TIME_SLICING, MIG = "whole GPUs", "time-slicing", "MIG"
# An EFA training pool (gpuPools[i].efa): whole GPUs, counted as such; its nodes also carry EFA interfaces, which
# the pool does not limit (each node has its type's fixed number, so bounding GPUs bounds them).
TRAINING = "whole GPUs + EFA"
# MIG slices of a 7-slice GPU (A100, H100, H200) a profile `<N>g.<memory>gb` leaves room for (NVIDIA MIG user guide,
# supported profiles); a bare number is the partition count itself (Bottlerocket 1.34.x `mig.profile`).
_SLICES = 7
_PROFILE = re.compile(r"^([0-9])g\.\d+gb$")


class SharedPool(Protocol):
    instance_types: tuple[str, ...]
    gpu_count_min: int | None
    gpu_count_max: int | None
    gpu_limit: int
    time_slicing_replicas: int | None
    mig_profile: Mapping[str, str]
    efa: bool
    replicas: int | None

    @property
    def static(self) -> bool: ...

    @property
    def matched_types(self) -> list[str]: ...


def pool_kind(pool: SharedPool) -> str:
    if pool.time_slicing_replicas:
        return TIME_SLICING
    if pool.mig_profile:
        return MIG
    return TRAINING if pool.efa else WHOLE


def pool_limits(pool: SharedPool) -> dict[str, int]:
    """The NodePool's `spec.limits`: the resource each kind counts the same before and after initialization. A static
    pool may only limit `nodes` (Karpenter's CRD), and holds exactly `replicas`: no node above it, so drift never
    launches a surge node (README, Capacity Blocks)."""
    if pool.static:
        return {NODES: pool.replicas}
    kind = pool_kind(pool)
    if kind == TIME_SLICING:
        return {SHARED_GPU_RESOURCE: pool.gpu_limit * pool.time_slicing_replicas}
    if kind == MIG:
        nodes = pool.gpu_limit // largest_gpu_count(pool.matched_types)
        # `nodes` holds the pool across passes; `cpu`, which a pass counts down per NodeClaim, holds one pass to as
        # many nodes of the roomiest type (module docstring).
        return {NODES: nodes, CPU: nodes * max(CATALOG[name].vcpu for name in pool.matched_types)}
    return {GPU_RESOURCE: pool.gpu_limit}


def overlay_gpu_counts(pool: SharedPool) -> list[int]:
    """The GPU counts a time-sliced pool's NodeOverlays cover: every count its requirements admit, so a type that
    joins later (an attribute pool picks it up) still offers its slices to the scheduler and counts them before
    initialization. A type list cannot grow: its own counts."""
    if not pool.time_slicing_replicas:
        return []
    if pool.instance_types:
        return sorted({CATALOG[name].gpu_count for name in pool.instance_types})
    fewest, most = gpu_count_bounds(pool)
    return list(range(fewest, most + 1))


def mig_partitions(pool: SharedPool, gpu_type: GpuType) -> int:
    """Partitions per GPU the pool's profile makes of this type's GPU (1: the GPU is not partitioned)."""
    for key, profile in pool.mig_profile.items():
        if key.split(".")[0] == gpu_type.gpu_name:
            match = _PROFILE.match(profile)
            return _SLICES // int(match[1]) if match else int(profile)
    return 1


def counted(pool: SharedPool, gpu_type: GpuType, initialized: bool) -> dict[str, int]:
    """What one node of `gpu_type` in this pool adds to the pool's usage (statenode.go Capacity()). Before
    initialization a time-sliced node counts slices only if a NodeOverlay gives its GPU count some."""
    gpus = gpu_type.gpu_count
    kind = pool_kind(pool)
    found = {NODES: 1, CPU: gpu_type.vcpu}
    if kind == TIME_SLICING:
        slices = gpus * pool.time_slicing_replicas
        if initialized:
            found[SHARED_GPU_RESOURCE] = slices
        else:
            found[GPU_RESOURCE] = gpus
            if gpus in overlay_gpu_counts(pool):
                found[SHARED_GPU_RESOURCE] = slices
    elif kind == MIG and initialized:
        found[GPU_RESOURCE] = gpus * mig_partitions(pool, gpu_type)
    else:
        found[GPU_RESOURCE] = gpus
    return found


def most_gpus(pool: SharedPool, limits: Mapping[str, int], initialized: bool) -> int | None:
    """An upper bound on the whole GPUs the pool can hold while its nodes are all in one phase; None: unbounded.

    Each limited resource R bounds the GPUs by limit_R x max over types of (GPUs / what one node counts of R); a type
    that counts 0 of every limited resource could be launched without end."""
    bound: float = math.inf
    for resource, limit in limits.items():
        ratios = []
        for name in pool.matched_types:
            gpu_type = CATALOG[name]
            amount = counted(pool, gpu_type, initialized).get(resource, 0)
            ratios.append(math.inf if amount == 0 else gpu_type.gpu_count / amount)
        bound = min(bound, limit * max(ratios))
    return None if math.isinf(bound) else math.floor(bound)


def most_gpus_in_one_batch(pool: SharedPool, limits: Mapping[str, int]) -> int | None:
    """An upper bound on the whole GPUs one scheduling pass can launch for the pool; None: unbounded.

    A pass counts each new NodeClaim at its instance type's capacity, the NodeClaim's (what `counted` gives before
    initialization), and counts `nodes` down not at all (module docstring). A static pool's controller reserves
    `nodes` as it creates NodeClaims, so there `nodes` holds."""
    if pool.static:
        return most_gpus(pool, limits, initialized=False)
    return most_gpus(pool, {r: limit for r, limit in limits.items() if r != NODES}, initialized=False)


def reaches(pool: SharedPool, limits: Mapping[str, int], gpus: int) -> bool:
    """Whether `gpus` whole GPUs on nodes of the pool's largest type stay within every limit in both phases."""
    largest = max((CATALOG[n] for n in pool.matched_types), key=lambda t: t.gpu_count)
    if gpus % largest.gpu_count:
        return False
    nodes = gpus // largest.gpu_count
    return all(
        nodes * counted(pool, largest, initialized).get(resource, 0) <= limit
        for initialized in (False, True)
        for resource, limit in limits.items()
    )


@dataclass(frozen=True)
class PoolBound:
    """A pool's limits and the whole GPUs they allow in each phase (what `render` prints)."""

    kind: str
    limits: dict[str, int]
    before_initialization: int | None
    after_initialization: int | None
    one_batch: int | None

    @property
    def enforced_by(self) -> str:
        return ", ".join(f"{resource} <= {limit}" for resource, limit in self.limits.items())


def pool_bound(pool: SharedPool) -> PoolBound:
    limits = pool_limits(pool)
    kind = pool_kind(pool) + (", static" if pool.static else "")
    phases = most_gpus(pool, limits, False), most_gpus(pool, limits, True)
    return PoolBound(kind, limits, *phases, most_gpus_in_one_batch(pool, limits))
