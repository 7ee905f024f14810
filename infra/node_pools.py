"""Node pools: Karpenter EC2NodeClasses (Bottlerocket, SOCI parallel pulls, RAID0) and NodePools (general, GPU).

The specs are built by pure functions (`nodeclass_spec`, `default_pool_spec`, and `gpu_pool_spec` of infra/gpu/pools.py)
that the component and the tests share; a GPU pool travels whole from config to its NodePool, node class and overlays.
Bottlerocket settings live in `nodeclasses/<default|gpu>.toml`; the program overlays the SOCI stack config and a GPU
pool's device sharing on them. GPU pools come from config (infra/gpu/pools.py).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import tomli_w
from pulumi_kubernetes.apiextensions import CustomResource

from infra.catalog.gpus import LABEL
from infra.config import PROJECT, GpuPool, StackConfig
from infra.gpu.placement import PoolOffer
from infra.gpu.pools import (
    GPU_CLASS,
    NODEOVERLAY_API_VERSION,
    capacity_reservation_terms,
    device_plugin_settings,
    gpu_classes,
    gpu_pool_spec,
    node_class_of,
    node_overlays,
)
from infra.network import DISCOVERY_TAG

if TYPE_CHECKING:
    from infra.cluster import Cluster
    from infra.karpenter import Karpenter

NODECLASS_DIR = Path(__file__).resolve().parent.parent / "nodeclasses"
NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"
NODEPOOL_API_VERSION = "karpenter.sh/v1"

DEFAULT_CLASS = "default"
DEFAULT_POOL = "default"

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

# General pool: 4-32 vCPU (Gt/Lt are exclusive), so bin-packing has room and one node is not a big blast radius.
DEFAULT_MIN_VCPU = 4
DEFAULT_MAX_VCPU = 32
DEFAULT_INSTANCE_CATEGORIES = ("c", "m", "r")
# Short enough to return idle capacity quickly, long enough not to churn nodes on bursty scale-down/up.
DEFAULT_CONSOLIDATE_AFTER = "5m"
DEFAULT_EXPIRE_AFTER = "720h"  # Karpenter's default: general nodes roll monthly to pick up patched AMIs.
# Deleting a pool or class waits for Karpenter to drain and terminate its nodes (finalizers). pulumi-kubernetes
# gives a custom resource 10 minutes by default; a GPU node draining a job, then a p5 shutting down, takes longer.
DELETE_TIMEOUT = "45m"


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


def stack_tags(cluster_name: str, stack: str, node_class: str) -> dict[str, str]:
    """EC2 tags of every instance, volume and launch template of a class (not Karpenter's reserved keys)."""
    return {
        f"{PROJECT}/stack": stack,
        f"{PROJECT}/cluster": cluster_name,
        f"{PROJECT}/node-class": node_class,
    }


def nodeclass_spec(
    node_class: str,
    cfg: StackConfig,
    *,
    cluster_name: str,
    role_name: str,
    stack: str,
    pool: GpuPool | None = None,
) -> dict:
    """The spec of the EC2NodeClass `node_class` ("default", "gpu" or "gpu-<pool>"); `pool`: the GPU pool whose own
    settings (device sharing, reservations) the class carries, None for a shared class."""
    discovery = [{"tags": {DISCOVERY_TAG: cluster_name}}]
    reservations = capacity_reservation_terms(pool)
    return {
        "role": role_name,
        # The pinned alias must be the only term: `@latest` would drift every node on each Bottlerocket release.
        "amiSelectorTerms": [{"alias": cfg.karpenter_node_alias}],
        "subnetSelectorTerms": discovery,
        "securityGroupSelectorTerms": discovery,
        # Hop limit 1: pods cannot reach IMDS and borrow the node role; they use Pod Identity.
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        },
        "blockDeviceMappings": block_device_mappings(node_class, cfg),
        **instance_store_policy(node_class, cfg),
        "userData": bottlerocket_user_data(
            node_class, SociTuning.from_config(cfg, node_class), device_plugin_settings(pool)
        ),
        **({"capacityReservationSelectorTerms": reservations} if reservations else {}),
        "tags": stack_tags(cluster_name, stack, node_class),
    }


def node_class_plan(cfg: StackConfig) -> dict[str, GpuPool | None]:
    """Every EC2NodeClass of the stack -> the GPU pool whose own settings it carries (None: default or shared)."""
    return {DEFAULT_CLASS: None, **gpu_classes(cfg)}


def _requirement(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


def _node_class_ref(node_class: str) -> dict[str, str]:
    return {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": node_class}


def default_pool_spec(cfg: StackConfig) -> dict:
    return {
        "template": {
            "spec": {
                "nodeClassRef": _node_class_ref(DEFAULT_CLASS),
                "requirements": [
                    _requirement(f"{LABEL}category", "In", *DEFAULT_INSTANCE_CATEGORIES),
                    _requirement(f"{LABEL}cpu", "Gt", str(DEFAULT_MIN_VCPU - 1)),
                    _requirement(f"{LABEL}cpu", "Lt", str(DEFAULT_MAX_VCPU + 1)),
                    _requirement("kubernetes.io/arch", "In", "amd64"),
                    _requirement("kubernetes.io/os", "In", "linux"),
                    _requirement("karpenter.sh/capacity-type", "In", "spot", "on-demand"),
                ],
                "expireAfter": DEFAULT_EXPIRE_AFTER,
            }
        },
        "limits": {"cpu": cfg.default_pool_cpu_limit, "memory": f"{cfg.default_pool_memory_limit}Gi"},
        "disruption": {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": DEFAULT_CONSOLIDATE_AFTER,
            "budgets": [{"nodes": "10%"}],
        },
    }


def nodepool_plan(cfg: StackConfig) -> dict[str, tuple[dict, str]]:
    """Every NodePool of the stack -> (its spec, the EC2NodeClass it launches with), each GPU pool built whole."""
    gpu = {pool.name: (gpu_pool_spec(pool, cfg), node_class_of(pool)) for pool in cfg.effective_gpu_pools}
    return {DEFAULT_POOL: (default_pool_spec(cfg), DEFAULT_CLASS), **gpu}


def stack_offers(cfg: StackConfig) -> list[PoolOffer]:
    """Every NodePool of the stack as the placement model sees it (infra/gpu/placement.py): specs and overlays exactly
    as rendered."""
    offers = [PoolOffer.from_spec(DEFAULT_POOL, default_pool_spec(cfg), gpu=False)]
    for pool in cfg.effective_gpu_pools:
        overlays = [spec for _, spec in node_overlays(pool)]
        offers.append(PoolOffer.from_spec(pool.name, gpu_pool_spec(pool, cfg), overlays))
    return offers


def manifest(api_version: str, kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A whole object, as the API server would receive it (what the conformance tests validate)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}


@dataclass(frozen=True)
class NodePoolsArgs:
    cluster: Cluster
    karpenter: Karpenter
    config: StackConfig
    teardown: pulumi.Resource
    """Carries the teardown cleanup hook; pools and classes are deleted before it runs."""


class NodePools(pulumi.ComponentResource):
    """The EC2NodeClasses and NodePools Karpenter provisions from."""

    node_classes: dict[str, CustomResource]
    node_pools: dict[str, CustomResource]
    node_overlays: dict[str, CustomResource]

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:NodePools", name, None, opts)
        cfg, karpenter = args.config, args.karpenter
        stack = pulumi.get_stack()
        self._provider = args.cluster.k8s_provider
        # On destroy, dependents go first: pools and classes are deleted while the controller can still
        # drain nodes and remove its finalizers.
        controller = [karpenter.crd_release, karpenter.release, args.teardown]

        self.node_classes = {}
        for node_class, own_pool in node_class_plan(cfg).items():
            spec = pulumi.Output.all(args.cluster.name, karpenter.node_role.name).apply(
                lambda names, node_class=node_class, own_pool=own_pool: nodeclass_spec(
                    node_class, cfg, cluster_name=names[0], role_name=names[1], stack=stack, pool=own_pool
                )
            )
            self.node_classes[node_class] = self._karpenter_object(
                f"{name}-{node_class}-class", NODECLASS_API_VERSION, "EC2NodeClass", node_class, spec, controller
            )

        self.node_pools = {
            pool: self._karpenter_object(
                f"{name}-{pool}-pool",
                NODEPOOL_API_VERSION,
                "NodePool",
                pool,
                spec,
                [*controller, self.node_classes[node_class]],
            )
            for pool, (spec, node_class) in nodepool_plan(cfg).items()
        }

        # Time-sliced pools: what each node offers in GPU slices, for Karpenter's scheduling simulation.
        self.node_overlays = {
            overlay: self._karpenter_object(
                f"{name}-{overlay}-overlay", NODEOVERLAY_API_VERSION, "NodeOverlay", overlay, spec, controller
            )
            for gpu_pool in cfg.effective_gpu_pools
            for overlay, spec in node_overlays(gpu_pool)
        }

        self.register_outputs(
            {
                "node_classes": list(self.node_classes),
                "node_pools": list(self.node_pools),
                "node_overlays": list(self.node_overlays),
            }
        )

    def _karpenter_object(
        self,
        resource_name: str,
        api_version: str,
        kind: str,
        object_name: str,
        spec: pulumi.Input[dict],
        depends_on: list[pulumi.Resource],
    ) -> CustomResource:
        # The delete waits while Karpenter drains and terminates the object's nodes (finalizers): see DELETE_TIMEOUT.
        return CustomResource(
            resource_name,
            api_version=api_version,
            kind=kind,
            metadata={"name": object_name},
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self._provider,
                depends_on=depends_on,
                custom_timeouts=pulumi.CustomTimeouts(delete=DELETE_TIMEOUT),
            ),
        )
