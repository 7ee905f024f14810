"""Node pools: Karpenter EC2NodeClasses (Bottlerocket, SOCI parallel pulls, RAID0) and NodePools (general, GPU).

The specs are built by pure functions (`nodeclass_spec`, `default_pool_spec`, and `gpu_pool_spec` of infra/gpu/pools.py)
that the component and the tests share; a GPU pool travels whole from config to its NodePool, node class and overlays.
Bottlerocket settings live in `nodeclasses/<default|gpu>.toml`; the program overlays the SOCI stack config and a GPU
pool's device sharing on them. GPU pools come from config (infra/gpu/pools.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as kubernetes
from pulumi_kubernetes.apiextensions import CustomResource

from infra.bottlerocket import (
    SociTuning,
    block_device_mappings,
    bottlerocket_user_data,
    instance_store_policy,
)
from infra.catalog.gpus import LABEL
from infra.catalog.selection import requirement
from infra.config import PROJECT, GpuPool, StackConfig
from infra.gpu.headroom import CAPACITY_BUFFER_API_VERSION, NAMESPACE, headroom_manifests
from infra.gpu.placement import CAPACITY_TYPE, PoolOffer
from infra.gpu.pools import (
    NODEOVERLAY_API_VERSION,
    capacity_reservation_terms,
    device_plugin_settings,
    gpu_classes,
    gpu_pool_spec,
    node_class_of,
    node_class_ref,
    node_overlays,
)
from infra.gpu.static import (
    REPLACE_ON_TOGGLE,
    network_interfaces,
    nodepool_metadata,
    placement_group_name,
    placement_group_selector,
)
from infra.gpu.stranding import EfaPlugin, efa_plugin
from infra.network import DISCOVERY_TAG

if TYPE_CHECKING:
    from infra.cluster import Cluster
    from infra.karpenter import Karpenter

NODECLASS_API_VERSION = "karpenter.k8s.aws/v1"
NODEPOOL_API_VERSION = "karpenter.sh/v1"

DEFAULT_CLASS = "default"
DEFAULT_POOL = "default"

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
        **({"networkInterfaces": interfaces} if (interfaces := network_interfaces(pool)) else {}),
        **placement_group_selector(cluster_name, pool),
        "tags": stack_tags(cluster_name, stack, node_class),
    }


def node_class_plan(cfg: StackConfig) -> dict[str, GpuPool | None]:
    """Every EC2NodeClass of the stack -> the GPU pool whose own settings it carries (None: default or shared)."""
    return {DEFAULT_CLASS: None, **gpu_classes(cfg)}


def default_pool_spec(cfg: StackConfig) -> dict:
    return {
        "template": {
            "spec": {
                "nodeClassRef": node_class_ref(DEFAULT_CLASS),
                "requirements": [
                    requirement(f"{LABEL}category", "In", *DEFAULT_INSTANCE_CATEGORIES),
                    requirement(f"{LABEL}cpu", "Gt", str(DEFAULT_MIN_VCPU - 1)),
                    requirement(f"{LABEL}cpu", "Lt", str(DEFAULT_MAX_VCPU + 1)),
                    requirement("kubernetes.io/arch", "In", "amd64"),
                    requirement("kubernetes.io/os", "In", "linux"),
                    requirement(CAPACITY_TYPE, "In", "spot", "on-demand"),
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


def stack_stranding(
    cfg: StackConfig, plugin: EfaPlugin | None = None
) -> tuple[list[PoolOffer], dict, EfaPlugin | None]:
    """What infra/gpu/stranding.py asks about a stack: its offers, GPU pools by name and where the EFA device plugin
    runs (the program's placement, unless one is given)."""
    pools = {pool.name: pool for pool in cfg.effective_gpu_pools}
    return stack_offers(cfg), pools, plugin if plugin is not None else efa_plugin(list(pools.values()))


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
    placement_groups: Mapping[str, aws.ec2.PlacementGroup]
    """GPU pool name -> its cluster placement group (`placement_groups`); the pool's class selects it by name."""


def placement_groups(cfg: StackConfig, cluster_name: pulumi.Input[str]) -> dict[str, aws.ec2.PlacementGroup]:
    """The cluster placement group of every pool with `placementGroup`. Created before the teardown anchor, which
    depends on them: on destroy a group goes only after the cleanup hook has terminated (and waited for) every
    Karpenter instance, since EC2 refuses to delete a group that still holds one and the provider does not retry
    (terraform-provider-aws internal/service/ec2 resourcePlacementGroupDelete)."""
    return {
        pool.name: aws.ec2.PlacementGroup(
            f"{pool.name}-placement",
            name=pulumi.Output.from_input(cluster_name).apply(
                lambda cluster, pool=pool: placement_group_name(cluster, pool)
            ),
            strategy=pool.placement_group,
        )
        for pool in cfg.effective_gpu_pools
        if pool.placement_group
    }


class NodePools(pulumi.ComponentResource):
    """The EC2NodeClasses and NodePools Karpenter provisions from."""

    node_classes: dict[str, CustomResource]
    node_pools: dict[str, CustomResource]
    node_overlays: dict[str, CustomResource]
    capacity_buffers: dict[str, CustomResource]
    placement_groups: Mapping[str, aws.ec2.PlacementGroup]

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:NodePools", name, None, opts)
        cfg, karpenter = args.config, args.karpenter
        stack = pulumi.get_stack()
        self._provider = args.cluster.k8s_provider
        # On destroy, dependents go first: pools and classes are deleted while the controller can still
        # drain nodes and remove its finalizers.
        controller = [karpenter.crd_release, karpenter.release, args.teardown]

        self.placement_groups = args.placement_groups
        self.node_classes = {}
        for node_class, own_pool in node_class_plan(cfg).items():
            spec = pulumi.Output.all(args.cluster.name, karpenter.node_role.name).apply(
                lambda names, node_class=node_class, own_pool=own_pool: nodeclass_spec(
                    node_class, cfg, cluster_name=names[0], role_name=names[1], stack=stack, pool=own_pool
                )
            )
            group = [self.placement_groups[own_pool.name]] if own_pool and own_pool.placement_group else []
            self.node_classes[node_class] = self._karpenter_object(
                f"{name}-{node_class}-class",
                NODECLASS_API_VERSION,
                "EC2NodeClass",
                node_class,
                spec,
                [*controller, *group],
            )

        gpu_pools = {pool.name: pool for pool in cfg.effective_gpu_pools}
        self.node_pools = {
            pool: self._karpenter_object(
                f"{name}-{pool}-pool",
                NODEPOOL_API_VERSION,
                "NodePool",
                pool,
                spec,
                [*controller, self.node_classes[node_class]],
                metadata=nodepool_metadata(gpu_pools[pool]) if pool in gpu_pools else {},
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

        # Pools with headroom: a CapacityBuffer keeps that many GPUs warm (infra/gpu/headroom.py).
        self.capacity_buffers = {pool.name: self._headroom(name, pool, controller) for pool in gpu_pools.values()
                                 if pool.headroom}  # fmt: skip

        self.register_outputs(
            {
                "node_classes": list(self.node_classes),
                "node_pools": list(self.node_pools),
                "node_overlays": list(self.node_overlays),
            }
        )

    def _headroom(self, name: str, pool: GpuPool, controller: list[pulumi.Resource]) -> CustomResource:
        """The pool's placeholder PodTemplate and the CapacityBuffer that points at it (same namespace)."""
        template, buffer = headroom_manifests(pool)
        pod_template = kubernetes.core.v1.PodTemplate(
            f"{name}-{pool.name}-headroom-template",
            metadata=template["metadata"],
            template=template["template"],
            opts=pulumi.ResourceOptions(parent=self, provider=self._provider),
        )
        return self._karpenter_object(
            f"{name}-{pool.name}-headroom",
            CAPACITY_BUFFER_API_VERSION,
            "CapacityBuffer",
            buffer["metadata"]["name"],
            buffer["spec"],
            [*controller, pod_template, self.node_pools[pool.name]],
            metadata={"namespace": NAMESPACE},
        )

    def _karpenter_object(
        self,
        resource_name: str,
        api_version: str,
        kind: str,
        object_name: str,
        spec: pulumi.Input[dict],
        depends_on: list[pulumi.Resource],
        metadata: dict[str, Any] | None = None,
    ) -> CustomResource:
        # The delete waits while Karpenter drains and terminates the object's nodes (finalizers): see DELETE_TIMEOUT.
        # A pool turning static or dynamic is replaced, the old object deleted first (one name): infra/gpu/static.py.
        return CustomResource(
            resource_name,
            api_version=api_version,
            kind=kind,
            metadata={"name": object_name, **(metadata or {})},
            spec=spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=self._provider,
                depends_on=depends_on,
                custom_timeouts=pulumi.CustomTimeouts(delete=DELETE_TIMEOUT),
                replace_on_changes=list(REPLACE_ON_TOGGLE) if kind == "NodePool" else None,
                delete_before_replace=kind == "NodePool",
            ),
        )
