"""Keys of the node classes and pools (infra/node_pools.py): the pinned Bottlerocket, disks, the default pool's limits
and the SOCI parallel-pull tuning of each class."""

from __future__ import annotations

import re

from pydantic import field_validator

from infra.config.convert import Bool, Int, Section, check_range, key, semver

_CHUNK_SIZE = re.compile(r"^(?:unlimited|[1-9][0-9]*(?:b|kb|kib|mb|mib|gb|gib)?)$")
_SNAPSHOT_ID = re.compile(r"^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


class NodePoolKeys(Section):
    bottlerocket_version: str = key("1.64.0", "Pinned Bottlerocket version of Karpenter nodes (AMI alias).")
    gpu_data_volume_size: Int = key(200, "GiB of the GPU nodes' data volume (container images).")
    gpu_image_cache_snapshot_id: str = key(
        "", "EBS snapshot of a Bottlerocket data volume with images pre-pulled; empty for none."
    )
    default_pool_cpu_limit: Int = key(1000, "Most vCPUs the default node pool may provision in total.")
    default_pool_memory_limit: Int = key(4000, "Most GiB of memory the default node pool may provision in total.")
    soci_default_downloads_per_image: Int = key(10, "SOCI parallel downloads per image, default node class.")
    soci_default_chunk_size: str = key("16mb", "SOCI download chunk size, default node class.")
    soci_default_unpacks_per_image: Int = key(10, "SOCI parallel unpacks per image, default node class.")
    soci_default_discard_unpacked_layers: Bool = key(True, "Discard compressed layers after unpack, default class.")
    soci_gpu_downloads_per_image: Int = key(30, "SOCI parallel downloads per image, GPU node class.")
    soci_gpu_chunk_size: str = key("32mb", "SOCI download chunk size, GPU node class.")
    soci_gpu_unpacks_per_image: Int = key(30, "SOCI parallel unpacks per image, GPU node class.")
    soci_gpu_discard_unpacked_layers: Bool = key(True, "Discard compressed layers after unpack, GPU class.")

    @field_validator("bottlerocket_version")
    @classmethod
    def _bottlerocket(cls, v: str) -> str:
        if semver(v.removeprefix("v")) < (1, 46, 0):
            raise ValueError("must be a pinned release >= 1.46.0 (SOCI parallel pull + RAID0 binding), like 1.64.0")
        return v.removeprefix("v")

    @field_validator("default_pool_cpu_limit", "default_pool_memory_limit")
    @classmethod
    def _positive(cls, v: int) -> int:
        return check_range(v, 1, 1_000_000, "must be a positive whole number")

    @field_validator("gpu_data_volume_size")
    @classmethod
    def _volume(cls, v: int) -> int:
        return check_range(v, 50, 16384, "must be between 50 and 16384 GiB (gp3 limits; GPU images are 10-20 GB)")

    @field_validator("gpu_image_cache_snapshot_id")
    @classmethod
    def _snapshot(cls, v: str) -> str:
        if v and not _SNAPSHOT_ID.match(v):
            raise ValueError("must be empty or an EBS snapshot id (snap- and 8 or 17 hex digits)")
        return v

    @field_validator(
        "soci_default_downloads_per_image",
        "soci_default_unpacks_per_image",
        "soci_gpu_downloads_per_image",
        "soci_gpu_unpacks_per_image",
    )
    @classmethod
    def _concurrency(cls, v: int) -> int:
        return check_range(v, 1, 256, "must be between 1 and 256")

    @field_validator("soci_default_chunk_size", "soci_gpu_chunk_size")
    @classmethod
    def _chunk(cls, v: str) -> str:
        if not _CHUNK_SIZE.match(v):
            raise ValueError('must be "unlimited" or a byte size like 16mb')
        return v

    @property
    def karpenter_node_alias(self) -> str:
        return f"bottlerocket@v{self.bottlerocket_version}"
