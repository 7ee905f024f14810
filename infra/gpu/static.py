"""Static GPU pools (`gpuPools[i].replicas`, README "Capacity Blocks"): what differs from a pool that scales with
pods, as pure functions of the config.

Karpenter 1.14 keeps a static NodePool at `replicas` nodes (feature gate staticCapacity; kubernetes-sigs/karpenter
v1.14.0 pkg/controllers/static/provisioning/controller.go). Its NodeClaims are built from the NodePool template alone
(provisioning/scheduling/nodeclaimtemplate.go NewNodeClaimTemplate): they carry no pod requests, so Karpenter's
dynamic EFA, which needs a `vpc.amazonaws.com/efa` request (karpenter-provider-aws pkg/providers/amifamily/resolver.go
L260-264), never applies, and an EFA static pool lists its interfaces in the node class instead
(aws/karpenter-provider-aws#9071).
"""

from __future__ import annotations

from typing import Any

from infra.catalog.gpus import CATALOG
from infra.config import PROJECT, GpuPool

# On the NodePool object of a static pool only. Karpenter's CRD refuses to add or remove `replicas` on a live
# NodePool (`has(self.replicas) == has(oldSelf.replicas)`), so toggling it must replace the object: Pulumi replaces
# the resource when its annotations change, which for a NodePool of ours means this one appearing or disappearing
# (dynamic pools have none; a new replica count is an update). The path is the whole map: the engine replaces when a
# reported diff lies under a replaceOnChanges path (pulumi/pulumi pkg/resource/deploy/step_generator.go
# applyReplaceOnChanges, `replaceOnChangePath.Contains(diffPath)`), and adding the first annotation is reported as a
# diff of `metadata.annotations` itself, which a path naming the key would not contain.
PROVISIONING_ANNOTATION = f"{PROJECT}/provisioning"
REPLACE_ON_TOGGLE = ("metadata.annotations",)


def nodepool_metadata(pool: GpuPool) -> dict[str, Any]:
    """The NodePool's metadata besides its name: the provisioning annotation of a static pool."""
    return {"annotations": {PROVISIONING_ANNOTATION: "static"}} if pool.static else {}


def network_interfaces(pool: GpuPool | None) -> list[dict[str, Any]]:
    """EC2NodeClass `networkInterfaces` of a static EFA pool: the primary interface and one EFA-only interface per
    network card, as many as the type has EFA (one layout: the config refuses pools whose types differ). The layout
    of Karpenter's own dynamic EFA (launchtemplate.go: card i, device index 0 on card 0 and 1 elsewhere) with the
    primary kept an IP interface (the CRD: a primary `interface` on card 0, device 0; one `efa-only` per card);
    Karpenter then counts the `efa-only` entries as the node's `vpc.amazonaws.com/efa` (instancetype/types.go efas)."""
    if pool is None or not (pool.static and pool.efa):
        return []
    cards = CATALOG[pool.matched_types[0]].efa
    return [
        {"networkCardIndex": 0, "deviceIndex": 0, "interfaceType": "interface"},
        *({"networkCardIndex": card, "deviceIndex": 1, "interfaceType": "efa-only"} for card in range(cards)),
    ]


def placement_group_name(cluster_name: str, pool: GpuPool) -> str:
    """The cluster placement group the program creates for a pool (`placementGroup: cluster`): unique per stack, so
    two stacks in one account and region never share one."""
    return f"{cluster_name}-{pool.name}"


def placement_group_selector(cluster_name: str, pool: GpuPool | None) -> dict[str, Any]:
    """EC2NodeClass `placementGroupSelector` (by name; Karpenter resolves it with DescribePlacementGroups and launches
    with its id: karpenter-provider-aws pkg/providers/placementgroup)."""
    if pool is None or not pool.placement_group:
        return {}
    return {"placementGroupSelector": {"name": placement_group_name(cluster_name, pool)}}
