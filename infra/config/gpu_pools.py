"""Keys of the GPU pools (infra/gpu/, infra/node_pools.py): `gpuPools` (one `GpuPool` per item) or the seed's single
pool (`gpuInstanceTypes`, `gpuCapacityTypes`, `gpuLimit`), how long idle GPU nodes stay, and the rules between them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator

from infra.catalog.gpus import largest_gpu_count
from infra.catalog.zones import REGION_ZONE_IDS
from infra.config.convert import (
    Int,
    Section,
    Strings,
    as_list,
    check_items,
    check_range,
    key,
)
from infra.config.errors import ConfigProblem, item_error
from infra.config.gpu_pool import (
    _FIELD_OF,
    LEGACY_GPU_POOL,
    GpuPool,
    _check_consolidate_after,
    _limit_below_largest,
    gpu_type_problem,
)
from infra.config.namespaces import did_you_mean
from infra.config.system_nodes import instance_type_problem

__all__ = ["LEGACY_GPU_POOL", "_FIELD_OF", "GpuPool", "GpuPoolKeys", "relation_problems"]


class GpuPoolKeys(Section):
    gpu_instance_types: Strings = key(("p5.48xlarge",), "NVIDIA GPU instance types for the GPU Spot node pool.")
    gpu_capacity_types: Strings = key(("spot",), "Capacity types for the GPU node pool: spot and/or on-demand.")
    gpu_pools: Annotated[tuple[GpuPool, ...], BeforeValidator(as_list)] = key(
        (), "GPU node pools (a list of objects, see README); replaces the single pool of gpuInstanceTypes."
    )
    gpu_limit: Int = key(
        16, "Most whole GPUs the single GPU node pool may hold, before and after its nodes initialize."
    )
    gpu_consolidate_after: str = key(
        "15m", "How long a GPU node must stay empty before Karpenter removes it (Go duration)."
    )

    @field_validator("gpu_instance_types")
    @classmethod
    def _gpu_instance_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_items(v, lambda _, item: instance_type_problem(item) or gpu_type_problem(item))

    @field_validator("gpu_capacity_types")
    @classmethod
    def _gpu_capacity(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        allowed = ("spot", "on-demand")
        return check_items(v, lambda _, i: None if i in allowed else "is not a capacity type; allowed: spot, on-demand")

    @field_validator("gpu_pools")
    @classmethod
    def _pools(cls, v: tuple[GpuPool, ...]) -> tuple[GpuPool, ...]:
        names = [pool.name for pool in v]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise item_error((i, "name"), name, f"is the name of gpuPools[{names.index(name)}] already")
        return v

    @field_validator("gpu_limit")
    @classmethod
    def _gpu_limit(cls, v: int) -> int:
        return check_range(v, 1, 1_000_000, "must be a positive whole number")

    @field_validator("gpu_consolidate_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        return _check_consolidate_after(v)

    @property
    def effective_gpu_pools(self) -> tuple[GpuPool, ...]:
        """`gpuPools`, or else the seed's single pool `gpu-spot` from gpuInstanceTypes and gpuCapacityTypes."""
        if self.gpu_pools:
            return self.gpu_pools
        return (
            GpuPool(
                name=LEGACY_GPU_POOL,
                instance_types=self.gpu_instance_types,
                capacity_types=self.gpu_capacity_types,
                gpu_limit=self.gpu_limit,
                consolidate_after=self.gpu_consolidate_after,
            ),
        )

    def consolidate_after(self, pool: GpuPool) -> str:
        return pool.consolidate_after or self.gpu_consolidate_after


def relation_problems(cfg: Any) -> list[ConfigProblem]:
    problems = []
    single_pool_keys = [
        key
        for key, field in (("gpuInstanceTypes", "gpu_instance_types"), ("gpuCapacityTypes", "gpu_capacity_types"))
        if getattr(cfg, field) != GpuPoolKeys.model_fields[field].default  # `pulumi up` injects the defaults
    ]
    if cfg.gpu_pools and single_pool_keys:
        problems.append(
            ConfigProblem(
                "gpuPools",
                [pool.name for pool in cfg.gpu_pools],
                f"replaces the single pool of {' and '.join(single_pool_keys)}: set one or the other, not both",
            )
        )
    largest = largest_gpu_count(cfg.gpu_instance_types)
    if not cfg.gpu_pools and cfg.gpu_limit < largest:
        why = _limit_below_largest(largest, list(cfg.gpu_instance_types))
        problems.append(ConfigProblem("gpuLimit", cfg.gpu_limit, why))
    problems += _zone_problems(cfg)
    return problems


def stack_zone_ids(cfg: Any) -> tuple[str, ...]:
    """The zones the stack's subnets may be in: availabilityZones, else every zone ID the region has."""
    return tuple(cfg.availability_zones) or tuple(REGION_ZONE_IDS.get(cfg.region, ()))


def _zone_problems(cfg: Any) -> list[ConfigProblem]:
    zones = stack_zone_ids(cfg)
    problems = []
    for i, pool in enumerate(cfg.gpu_pools):
        if pool.zone is not None and zones and pool.zone not in zones:
            hint = did_you_mean(pool.zone, zones)
            problems.append(
                ConfigProblem(
                    f"gpuPools[{i}].zone",
                    pool.zone,
                    f"is not one of the stack's zones; {hint}zones: {', '.join(zones)}",
                )
            )
    return problems
