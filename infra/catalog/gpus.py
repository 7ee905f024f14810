"""The NVIDIA instance-type catalog (infra/data/gpu_catalog.json, generated from Karpenter's own reference) and an
evaluator of Karpenter requirements against it: what a pool's requirements match today.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.catalog.data import load_data

_AWS = load_data("aws_catalog")
GPU_MEMORY_REPORTED_FRACTION: float = _AWS["gpu_memory_reported_fraction"]
MAX_GPUS_PER_INSTANCE: int = _AWS["max_gpus_per_instance"]
LABEL = "karpenter.k8s.aws/instance-"  # the prefix of Karpenter's instance-type labels (the one definition)
# The extended resource of EFA interfaces: the EFA device plugin advertises it; Karpenter knows each type's count
# (karpenter-provider-aws v1.14 pkg/apis/v1/labels.go `ResourceEFA`) and, for a NodeClaim whose pods request it,
# launches with that many EFA interfaces (pkg/providers/instance/instance.go getEFACountForInstance,
# pkg/providers/launchtemplate/launchtemplate.go `lo.Times(options.EFACount, ...)`).
EFA_RESOURCE = "vpc.amazonaws.com/efa"
# Branch network interfaces for security groups for pods: Karpenter gives every trunk-capable type a count
# (karpenter-provider-aws v1.14.1 pkg/providers/instancetype/types.go L341 `v1.ResourceAWSPodENI: awsPodENI(...)`),
# whether or not the cluster's VPC CNI will ever advertise it (infra/gpu/stranding.py).
POD_ENI_RESOURCE = "vpc.amazonaws.com/pod-eni"


@dataclass(frozen=True)
class GpuType:
    name: str
    family: str
    gpu_name: str
    gpu_count: int
    gpu_memory_mib: int
    vcpu: int
    memory_mib: int
    local_nvme_gib: int
    arch: str
    efa: int = 0
    pod_eni: int = 0
    category: str = ""
    generation: int = 0
    size: str = ""
    cpu_manufacturer: str = ""
    allocatable_millicpu: int = 0
    allocatable_memory_mib: int = 0
    pods: int = 0

    @property
    def labels(self) -> dict[str, str]:
        """The labels Karpenter gives this type (the ones GPU pools select on)."""
        return {
            "node.kubernetes.io/instance-type": self.name,
            "kubernetes.io/arch": self.arch,
            "kubernetes.io/os": "linux",
            f"{LABEL}family": self.family,
            f"{LABEL}category": self.category,
            f"{LABEL}generation": str(self.generation),
            f"{LABEL}size": self.size,
            f"{LABEL}cpu-manufacturer": self.cpu_manufacturer,
            f"{LABEL}gpu-name": self.gpu_name,
            f"{LABEL}gpu-manufacturer": "nvidia",
            f"{LABEL}gpu-count": str(self.gpu_count),
            f"{LABEL}gpu-memory": str(self.gpu_memory_mib),
            f"{LABEL}cpu": str(self.vcpu),
            f"{LABEL}memory": str(self.memory_mib),
            **({f"{LABEL}local-nvme": str(self.local_nvme_gib)} if self.local_nvme_gib else {}),
        }


CATALOG: dict[str, GpuType] = {
    name: GpuType(name=name, **fields) for name, fields in load_data("gpu_catalog")["instance_types"].items()
}
GPU_NAMES: tuple[str, ...] = tuple(sorted({t.gpu_name for t in CATALOG.values()}))
GPU_FAMILIES: tuple[str, ...] = tuple(sorted({t.family for t in CATALOG.values()}))
# What a GPU pool can select: amd64 types with at least one whole GPU (pools run the x86_64 Bottlerocket NVIDIA
# variant; fractional g6f/gr6f types report 0 GPUs). t4g (only arm64 g5g) and the fractional families are not offered.
POOL_TYPES: tuple[str, ...] = tuple(sorted(n for n, t in CATALOG.items() if t.arch == "amd64" and t.gpu_count >= 1))
POOL_GPU_NAMES: tuple[str, ...] = tuple(sorted({CATALOG[n].gpu_name for n in POOL_TYPES}))
POOL_GPU_FAMILIES: tuple[str, ...] = tuple(sorted({CATALOG[n].family for n in POOL_TYPES}))


def largest_gpu_count(types: Iterable[str]) -> int:
    """The most GPUs one of these catalog types has (what a pool's gpuLimit must at least allow)."""
    return max(CATALOG[name].gpu_count for name in types)


def reported_memory_floor_mib(sold_gib: int) -> int:
    """The `instance-gpu-memory` value (MiB) above which a GPU sold with `sold_gib` GiB reports (Gt operand)."""
    return math.floor(sold_gib * 1024 * GPU_MEMORY_REPORTED_FRACTION)


def requirement_holds(requirement: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Karpenter's (Kubernetes node-selector) semantics of one requirement against one type's labels."""
    key, operator, values = requirement["key"], requirement["operator"], requirement.get("values", [])
    value = labels.get(key)
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if value is None:
        return False
    bound = int(values[0])
    return {"Gt": int(value) > bound, "Lt": int(value) < bound, "Gte": int(value) >= bound, "Lte": int(value) <= bound}[
        operator
    ]


def matching_types(requirements: Iterable[Mapping[str, Any]], catalog: Mapping[str, GpuType] = CATALOG) -> list[str]:
    """Names of the catalog's types that satisfy every requirement (labels the catalog lacks, such as the capacity
    type, are not instance-type properties and are skipped)."""
    known = {key for t in catalog.values() for key in t.labels} | {f"{LABEL}local-nvme"}
    relevant = [r for r in requirements if r["key"] in known]
    return sorted(n for n, t in catalog.items() if all(requirement_holds(r, t.labels) for r in relevant))
