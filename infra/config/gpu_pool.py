"""One item of `gpuPools` (`GpuPool`): its keys, each key's check and the rules between a pool's own keys. The
stack-level keys and the rules between pools and other keys are in gpu_pools.py."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from infra.catalog.gpus import (
    CATALOG,
    GPU_FAMILIES,
    GPU_NAMES,
    MAX_GPUS_PER_INSTANCE,
    POOL_GPU_FAMILIES,
    POOL_GPU_NAMES,
    POOL_TYPES,
    largest_gpu_count,
    matching_types,
)
from infra.catalog.selection import ARCH, platform_requirements, selection_requirements
from infra.config.convert import (
    DNS_LABEL,
    Bool,
    Int,
    Section,
    StringMap,
    Strings,
    check_items,
    check_range,
    seconds,
)
from infra.config.errors import item_error, item_errors
from infra.config.network import ZONE_ID

_DURATION = re.compile(r"^(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?$")
_RESERVATION_ID = re.compile(r"^cr-[0-9a-z]+$")
# Bottlerocket settings.kubelet-device-plugins.nvidia.mig.profile: "<gpu model>.<memory>gb" -> a partition count
# (1, 2, 3, 4, 7) or a MIG profile like 1g.10gb (bottlerocket settings docs, 1.34.x kubelet-device-plugins).
_MIG_GPU = re.compile(r"^([a-z])(\d+)\.(\d+)gb$")
_MIG_PROFILE = re.compile(r"^(?:[12347]|[0-9]g\.\d+gb)$")
CAPACITY_TYPES = ("spot", "on-demand", "reserved")
# Cluster only: partition and spread groups support no Capacity Reservations (EC2 user guide, cr-cpg) and spread
# allows 7 instances per zone; a cluster group is what multi-node training wants.
PLACEMENT_STRATEGIES = ("cluster",)
LEGACY_GPU_POOL = "gpu-spot"  # the seed's single GPU pool, kept when gpuPools is not set


class GpuPool(Section):
    """One item of `gpuPools`: a Karpenter NodePool for GPU work. Keys are camelCase, as in the stack file."""

    name: str
    # Selection: a type list, or any combination of GPU attributes.
    instance_types: Strings = ()
    gpu_names: Strings = ()
    gpu_count_min: Int | None = None
    gpu_count_max: Int | None = None
    gpu_memory_min_gib: Int | None = Field(None, alias="gpuMemoryMinGiB")
    families: Strings = ()
    # Capacity.
    capacity_types: Strings = ("spot",)
    capacity_reservation_ids: Strings = ()
    capacity_reservation_tags: StringMap = Field(default_factory=dict)
    gpu_limit: Int = 16
    weight: Int | None = None
    consolidate_after: str | None = None
    # GPU sharing (Bottlerocket's NVIDIA device plugin).
    time_slicing_replicas: Int | None = None
    mig_profile: StringMap = Field(default_factory=dict)
    # Multi-node training (README, Training pools): EFA between nodes, all in one zone.
    efa: Bool = False
    zone: str | None = None
    # Static capacity (README, Capacity Blocks): a fixed number of nodes, whatever pods ask for.
    replicas: Int | None = None
    placement_group: str | None = None
    # Warm headroom (README, Recovering from a Spot interruption): whole GPUs a CapacityBuffer keeps idle and ready.
    headroom: Int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DNS_LABEL.match(v) or v == "default":
            raise ValueError("must be a DNS label (lowercase letters, digits, '-'; at most 63) and not 'default'")
        return v

    @field_validator("instance_types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_items(v, lambda _, item: gpu_type_problem(item), allow_empty=True)

    @field_validator("gpu_names")
    @classmethod
    def _gpu_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unusable = "only arm64 or fractional types have it; GPU pools need amd64 and whole GPUs"
        check = _catalog_check(GPU_NAMES, POOL_GPU_NAMES, unusable, "is not a GPU name Karpenter reports")
        return check_items(v, check, allow_empty=True)

    @field_validator("families")
    @classmethod
    def _families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unusable = "has only arm64 or fractional-GPU types; GPU pools need amd64 and whole GPUs"
        check = _catalog_check(GPU_FAMILIES, POOL_GPU_FAMILIES, unusable, "is not an NVIDIA GPU family")
        return check_items(v, check, allow_empty=True)

    @field_validator("gpu_count_min", "gpu_count_max")
    @classmethod
    def _count(cls, v: int | None) -> int | None:
        return check_range(
            v, 1, MAX_GPUS_PER_INSTANCE, f"must be between 1 and {MAX_GPUS_PER_INSTANCE} GPUs per instance"
        )

    @field_validator("gpu_memory_min_gib")
    @classmethod
    def _memory(cls, v: int | None) -> int | None:
        return check_range(v, 1, 1024, "must be the GiB per GPU as the GPU is sold, like 24 (L4, A10G) or 80 (H100)")

    @field_validator("capacity_types")
    @classmethod
    def _capacity(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        why = f"is not a capacity type; allowed: {', '.join(CAPACITY_TYPES)}"
        return check_items(v, lambda _, item: None if item in CAPACITY_TYPES else why)

    @field_validator("capacity_reservation_ids")
    @classmethod
    def _reservations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        why = "is not a capacity reservation id (cr- and lowercase letters or digits)"
        return check_items(v, lambda _, item: None if _RESERVATION_ID.match(item) else why, allow_empty=True)

    @field_validator("gpu_limit")
    @classmethod
    def _limit(cls, v: int) -> int:
        return check_range(v, 1, 100_000, "must be a positive number of GPUs")

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: int | None) -> int | None:
        return check_range(v, 1, 100, "must be between 1 and 100 (Karpenter's NodePool weight)")

    @field_validator("consolidate_after")
    @classmethod
    def _consolidate(cls, v: str | None) -> str | None:
        return v if v is None else _check_consolidate_after(v)

    @field_validator("time_slicing_replicas")
    @classmethod
    def _replicas(cls, v: int | None) -> int | None:
        return check_range(v, 2, 64, "must be between 2 and 64 (Bottlerocket time-slicing replicas per GPU)")

    @field_validator("mig_profile")
    @classmethod
    def _mig(cls, v: dict[str, str]) -> dict[str, str]:
        for gpu, profile in v.items():
            if not _MIG_GPU.match(gpu):
                raise item_error(gpu, profile, 'is not a "<gpu model>.<memory>gb" key like "h100.80gb"')
            if not isinstance(profile, str) or not _MIG_PROFILE.match(profile):
                raise item_error(gpu, profile, 'is not a partition count (1, 2, 3, 4, 7) or a profile like "1g.10gb"')
        return v

    @field_validator("replicas")
    @classmethod
    def _static_replicas(cls, v: int | None) -> int | None:
        return check_range(v, 0, 1000, "must be a number of nodes between 0 and 1000")

    @field_validator("placement_group")
    @classmethod
    def _placement(cls, v: str | None) -> str | None:
        if v is not None and v not in PLACEMENT_STRATEGIES:
            raise ValueError(
                f"is not a placement strategy this program creates; allowed: {', '.join(PLACEMENT_STRATEGIES)}"
            )
        return v

    @field_validator("headroom")
    @classmethod
    def _headroom(cls, v: int | None) -> int | None:
        return check_range(v, 1, 100_000, "must be a positive number of whole GPUs to keep warm")

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None and not ZONE_ID.match(v):
            raise ValueError("is not a zone ID (like usw2-az1; zone names like us-west-2a differ per account)")
        return v

    @model_validator(mode="after")
    def _whole_pool(self) -> GpuPool:
        """Every rule between the pool's keys; every broken one is reported, not the first only."""
        errors = self._selection_errors()
        if not errors:  # the rules below read the types the selection matches
            errors = (
                self._capacity_errors()
                + self._check_efa()
                + self._check_static()
                + self._check_headroom()
                + self._limit_errors()
            )
        if errors:
            raise item_errors(errors)
        return self

    def _selection_errors(self) -> list[PydanticCustomError]:
        selection = {"gpuNames": self.gpu_names, "families": self.families}
        attributes = [k for k, v in selection.items() if v] + [
            k
            for k, v in (
                ("gpuCountMin", self.gpu_count_min),
                ("gpuCountMax", self.gpu_count_max),
                ("gpuMemoryMinGiB", self.gpu_memory_min_gib),
            )
            if v is not None
        ]
        if self.instance_types and attributes:
            excluded = f"excludes {', '.join(attributes)}: choose one"
            return [item_error("instanceTypes", list(self.instance_types), excluded)]
        if not self.instance_types and not attributes:
            return [item_error("instanceTypes", [], "a pool needs instanceTypes or GPU attributes (gpuNames, ...)")]
        if self.gpu_count_min and self.gpu_count_max and self.gpu_count_min > self.gpu_count_max:
            return [item_error("gpuCountMax", self.gpu_count_max, f"is below gpuCountMin ({self.gpu_count_min})")]
        if not self.instance_types and not self.matched_types:
            why = "together these select no NVIDIA type"
            return [item_error(attributes[0], getattr(self, _FIELD_OF[attributes[0]]), why)]
        return []

    def _capacity_errors(self) -> list[PydanticCustomError]:
        errors = []
        reserved = "reserved" in self.capacity_types
        has_reservations = bool(self.capacity_reservation_ids or self.capacity_reservation_tags)
        if reserved and not has_reservations:
            errors.append(
                item_error(
                    "capacityTypes",
                    list(self.capacity_types),
                    "'reserved' needs capacityReservationIds or capacityReservationTags (Karpenter uses no open "
                    "reservation otherwise)",
                )
            )
        if has_reservations and not reserved:
            ids = list(self.capacity_reservation_ids)
            errors.append(item_error("capacityReservationIds", ids, "needs 'reserved' in capacityTypes"))
        if self.time_slicing_replicas and self.mig_profile:
            why = "excludes timeSlicingReplicas: choose one way to share"
            errors.append(item_error("migProfile", self.mig_profile, why))
        return errors

    def _limit_errors(self) -> list[PydanticCustomError]:
        errors = []
        largest = largest_gpu_count(self.matched_types)
        if self.gpu_limit < largest:
            errors.append(item_error("gpuLimit", self.gpu_limit, _limit_below_largest(largest, self.matched_types)))
        models = {t.gpu_name for t in map(CATALOG.get, self.matched_types)}
        for gpu, profile in self.mig_profile.items():
            if _MIG_GPU.match(gpu) and f"{gpu[0]}{_MIG_GPU.match(gpu)[2]}" not in models:
                gpus = ", ".join(sorted(models))
                errors.append(item_error(f"migProfile.{gpu}", profile, f"this pool has no such GPU; its GPUs: {gpus}"))
        return errors

    def _check_efa(self) -> list[PydanticCustomError]:
        if not self.efa:
            return []
        errors = []
        if self.zone is None:
            why = "is required with efa: EFA and NCCL need every node in one zone, like usw2-az1"
            errors.append(item_error("zone", None, why))
        if self.time_slicing_replicas or self.mig_profile:
            sharing = "timeSlicingReplicas" if self.time_slicing_replicas else "migProfile"
            errors.append(item_error("efa", True, f"excludes {sharing}: a training pool gives each pod whole GPUs"))
        without = [name for name in self.matched_types if not CATALOG[name].efa]
        if without:
            with_efa = sorted(n for n in POOL_TYPES if CATALOG[n].efa and CATALOG[n].gpu_count >= 8)
            errors.append(
                item_error(
                    "efa",
                    True,
                    f"needs types with EFA (Karpenter's vpc.amazonaws.com/efa); without: {', '.join(without[:6])}; "
                    f"multi-GPU types with EFA: {', '.join(with_efa)}",
                )
            )
        return errors

    def _check_static(self) -> list[PydanticCustomError]:
        errors = []
        if self.placement_group and not (self.efa and self.zone):
            why = "needs efa and zone: a cluster group is one zone's EFA fabric"
            errors.append(item_error("placementGroup", self.placement_group, why))
        if self.replicas is None:
            return errors
        if "spot" in self.capacity_types:
            errors.append(
                item_error(
                    "capacityTypes",
                    list(self.capacity_types),
                    "with replicas allows only reserved and on-demand: a static pool holds its nodes, Spot reclaims "
                    "them",
                )
            )
        if self.weight is not None:
            why = "is not supported with replicas (Karpenter's static NodePools)"
            errors.append(item_error("weight", self.weight, why))
        efa_counts = {CATALOG[name].efa for name in self.matched_types}
        if self.efa and len(efa_counts) > 1:
            layouts = ", ".join(f"{name} {CATALOG[name].efa}" for name in self.matched_types)
            errors.append(
                item_error(
                    "instanceTypes",
                    list(self.instance_types),
                    f"with replicas and efa need one EFA layout (the node class lists each interface); EFA per type: "
                    f"{layouts}",
                )
            )
        return errors

    def _check_headroom(self) -> list[PydanticCustomError]:
        if self.headroom is None:
            return []
        if self.static:
            return [item_error("headroom", self.headroom, "excludes replicas: a static pool holds its nodes already")]
        sharing = "timeSlicingReplicas" if self.time_slicing_replicas else "migProfile" if self.mig_profile else None
        if sharing:
            why = f"excludes {sharing}: headroom keeps whole GPUs warm, and a shared pool counts slices or partitions"
            return [item_error("headroom", self.headroom, why)]
        if self.headroom > self.gpu_limit:
            # Karpenter counts the nodes it launches for a CapacityBuffer in the pool's limits like any other
            # (infra/gpu/headroom.py): a buffer above gpuLimit could never be filled.
            why = f"is above gpuLimit ({self.gpu_limit}): warm GPUs count in the pool's limit"
            return [item_error("headroom", self.headroom, why)]
        return []

    @property
    def requirements(self) -> list[dict[str, Any]]:
        """The pool's requirements on instance-type labels (selection, arch, OS)."""
        return [*selection_requirements(self), *platform_requirements()]

    @property
    def static(self) -> bool:
        """`replicas` set: Karpenter holds that many nodes, whatever pods ask for (README, Capacity Blocks)."""
        return self.replicas is not None

    @property
    def most_gpus(self) -> int:
        """The most whole GPUs the pool holds: gpuLimit, or a static pool's replicas of its largest type."""
        if self.static:
            return self.replicas * largest_gpu_count(self.matched_types)
        return self.gpu_limit

    @property
    def bound_by(self) -> str:
        """The key that sets most_gpus, as the preflight names it."""
        return f"replicas {self.replicas}" if self.static else f"gpuLimit {self.gpu_limit} GPUs"

    @property
    def matched_types(self) -> list[str]:
        """The catalog's types these requirements match today."""
        return matching_types(self.requirements)


_FIELD_OF = {f.alias or name: name for name, f in GpuPool.model_fields.items()}


def _catalog_check(every: tuple[str, ...], usable: tuple[str, ...], unusable_why: str, unknown_why: str) -> Any:
    """A per-item check of a catalog name: one a pool can use passes; one the catalog has but no pool can use, and
    one it lacks, each say so and list the usable ones (names no pool can use are not offered)."""

    def check(_: int, item: str) -> str | None:
        if item in usable:
            return None
        if item in every:
            return f"{unusable_why}; usable: {', '.join(usable)}"
        return f"{unknown_why}; known: {', '.join(usable)}"

    return check


def gpu_type_problem(item: str) -> str | None:
    """Why a GPU pool cannot use this instance type, or None."""
    gpu_type = CATALOG.get(item)
    if gpu_type is None:
        families = ", ".join(POOL_GPU_FAMILIES)
        return f"is not an NVIDIA GPU instance type (infra/data/gpu_catalog.json); families: {families}"
    if gpu_type.arch != ARCH or gpu_type.gpu_count < 1:
        shape = f"is {gpu_type.arch} with {gpu_type.gpu_count} whole GPUs"
        return f"{shape}; GPU pools need amd64 and at least one whole GPU"
    return None


def _limit_below_largest(largest: int, types: list[str]) -> str:
    biggest = [name for name in types if CATALOG[name].gpu_count == largest]
    return (
        f"is below the {largest} GPUs of the pool's largest type ({', '.join(biggest[:3])}): Karpenter would never "
        f"launch it; set at least {largest}, or narrow the pool (gpuCountMax, instanceTypes)"
    )


def _check_consolidate_after(v: str) -> str:
    if not v or not _DURATION.match(v) or seconds(v) < 300:
        raise ValueError("must be a Go duration of at least 5m (longer than a cold GPU image pull), like 15m")
    return v
