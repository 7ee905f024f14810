"""Bottlerocket on Karpenter nodes: each node class's settings (nodeclasses/<default|gpu>.toml with the SOCI
parallel-pull tuning from config and a GPU pool's device sharing laid over it) and its disks (OS and data volumes,
RAID0 over instance stores). Pure functions; infra/node_pools.py builds the EC2NodeClasses from them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from infra.config import StackConfig
from infra.gpu.pools import GPU_CLASS

NODECLASS_DIR = Path(__file__).resolve().parent.parent / "nodeclasses"

SOCI_PARALLEL_PULL = ("container-runtime-plugins", "soci-snapshotter", "parallel-pull-unpack")

# Bottlerocket's own layout: /dev/xvda holds the OS image, /dev/xvdb the data volume (images, kubelet, logs).
# Karpenter's Bottlerocket defaults are 4Gi + 20Gi; listing blockDeviceMappings replaces both, so both are here.
OS_DEVICE = "/dev/xvda"
DATA_DEVICE = "/dev/xvdb"
OS_VOLUME_GIB = 4
# General nodes: a few GB of images each; 250 MiB/s keeps 10 parallel 16 MB downloads + unpacks off the gp3
# 125 MiB/s baseline for a few dollars a month.
DEFAULT_DATA_VOLUME_GIB = 80
DEFAULT_DATA_IOPS = 3000
DEFAULT_DATA_THROUGHPUT = 250
# GPU nodes write a 14 GB image (compressed, then unpacked) within ~35 s: ~800 MB/s of writes. gp3's maximum
# (1000 MiB/s, 16000 IOPS per the CRD) keeps the disk from being the bottleneck; it costs under $0.15/h,
# noise next to the instance.
GPU_DATA_THROUGHPUT = 1000
GPU_DATA_IOPS = 16000
# With an image-cache snapshot, blocks would otherwise load lazily from S3 on first read; the CRD allows
# 100-300 MiB/s and the fastest rate initialises 200 GiB in about 11 minutes.
SNAPSHOT_INITIALIZATION_RATE = 300


@dataclass(frozen=True)
class SociTuning:
    """SOCI parallel-pull settings of one node class, from the stack config."""

    downloads_per_image: int
    chunk_size: str
    unpacks_per_image: int
    discard_unpacked_layers: bool

    @classmethod
    def from_config(cls, cfg: StackConfig, node_class: str) -> SociTuning:
        if is_gpu_class(node_class):
            return cls(
                cfg.soci_gpu_downloads_per_image,
                cfg.soci_gpu_chunk_size,
                cfg.soci_gpu_unpacks_per_image,
                cfg.soci_gpu_discard_unpacked_layers,
            )
        return cls(
            cfg.soci_default_downloads_per_image,
            cfg.soci_default_chunk_size,
            cfg.soci_default_unpacks_per_image,
            cfg.soci_default_discard_unpacked_layers,
        )

    def as_settings(self) -> dict[str, Any]:
        """The Bottlerocket keys under settings.container-runtime-plugins.soci-snapshotter.parallel-pull-unpack."""
        return {
            "max-concurrent-downloads-per-image": self.downloads_per_image,
            "concurrent-download-chunk-size": self.chunk_size,
            "max-concurrent-unpacks-per-image": self.unpacks_per_image,
            "discard-unpacked-layers": self.discard_unpacked_layers,
        }


def is_gpu_class(node_class: str) -> bool:
    return node_class == GPU_CLASS or node_class.startswith(f"{GPU_CLASS}-")


def nodeclass_settings_file(node_class: str) -> Path:
    """Every GPU class (`gpu`, `gpu-<pool>`) starts from nodeclasses/gpu.toml."""
    return NODECLASS_DIR / f"{GPU_CLASS if is_gpu_class(node_class) else node_class}.toml"


def bottlerocket_settings(
    node_class: str, tuning: SociTuning, device_plugin: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The node class's TOML file with the SOCI tuning from config laid over it, and a GPU pool's device sharing
    (`settings.kubelet-device-plugins.nvidia`; Karpenter passes settings other than `kubernetes` through)."""
    document = tomllib.loads(nodeclass_settings_file(node_class).read_text(encoding="utf-8"))
    table = document["settings"]
    for key in SOCI_PARALLEL_PULL:
        table = table.setdefault(key, {})
    table.update(tuning.as_settings())
    if device_plugin:
        document["settings"].setdefault("kubelet-device-plugins", {})["nvidia"] = device_plugin
    return document


def bottlerocket_user_data(node_class: str, tuning: SociTuning, device_plugin: dict[str, Any] | None = None) -> str:
    return tomli_w.dumps(bottlerocket_settings(node_class, tuning, device_plugin))


def _ebs(volume_size: str, iops: int, throughput: int, **extra: Any) -> dict[str, Any]:
    return {
        "volumeSize": volume_size,
        "volumeType": "gp3",
        "iops": iops,
        "throughput": throughput,
        "encrypted": True,
        "deleteOnTermination": True,
        **extra,
    }


def block_device_mappings(node_class: str, cfg: StackConfig) -> list[dict[str, Any]]:
    os_volume = {"deviceName": OS_DEVICE, "ebs": _ebs(f"{OS_VOLUME_GIB}Gi", iops=3000, throughput=125)}
    if is_gpu_class(node_class):
        cache = (
            {"snapshotID": cfg.gpu_image_cache_snapshot_id, "volumeInitializationRate": SNAPSHOT_INITIALIZATION_RATE}
            if cfg.gpu_image_cache_snapshot_id
            else {}
        )
        data = _ebs(f"{cfg.gpu_data_volume_size}Gi", GPU_DATA_IOPS, GPU_DATA_THROUGHPUT, **cache)
    else:
        data = _ebs(f"{DEFAULT_DATA_VOLUME_GIB}Gi", DEFAULT_DATA_IOPS, DEFAULT_DATA_THROUGHPUT)
    return [os_volume, {"deviceName": DATA_DEVICE, "ebs": data}]


def instance_store_policy(node_class: str, cfg: StackConfig) -> dict[str, str]:
    """RAID0 over the NVMe instance stores, unless the GPU class boots from an image-cache snapshot.

    With RAID0, Karpenter's Bottlerocket bootstrap binds /var/lib/containerd and /var/lib/soci-snapshotter onto the
    fresh array before containerd starts (karpenter-provider-aws pkg/providers/amifamily/bootstrap/bottlerocket.go,
    Bottlerocket >= 1.46 binds the SOCI directory too): a snapshot's images on the data volume would be hidden.
    Karpenter writes that bootstrap itself, so there are no hand-written ephemeral-storage settings.
    """
    if is_gpu_class(node_class) and cfg.gpu_image_cache_snapshot_id:
        return {}
    return {"instanceStorePolicy": "RAID0"}
