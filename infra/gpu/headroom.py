"""Warm GPU headroom: a CapacityBuffer per pool with `headroom`, and what that headroom holds and costs.

How Karpenter 1.14.1 consumes a CapacityBuffer (kubernetes-sigs/karpenter v1.14.1, K = that repository), which is
what decides how its capacity is counted:
- The buffer controller resolves `podTemplateRef` in the buffer's own namespace and sets `status.replicas` from
  `spec.replicas` (K pkg/controllers/capacitybuffer/controller.go resolveAndUpdateStatus, computeReplicas); it runs
  only with the `CapacityBuffer` feature gate (K pkg/controllers/controllers.go L178), which the chart sets from
  `settings.featureGates.capacityBuffer` (off by default).
- The provisioner appends that many *virtual* pods, built from the template, to the pending pods of every
  scheduling pass (K pkg/controllers/provisioning/provisioner.go L221-222; pkg/state/virtualpods/utilities.go
  BuildVirtualPods). They never exist in the API server, and are scheduled like real pods: so the nodes launched for
  them are ordinary NodeClaims of the pool, checked against its remaining limits and counted in its usage exactly
  like any other node, before and after initialization (infra/gpu/limits.py). A buffer's GPUs use up the pool's
  `gpuLimit`.
- A node holding virtual pods is not empty: WhenEmpty consolidation leaves it (K pkg/controllers/disruption/
  emptiness.go L54, HasBufferPods), so `consolidateAfter` does not remove the headroom.
- A real pod the kube-scheduler places on that node takes the room; at the next pass the virtual pods no longer fit
  there and Karpenter launches capacity for them again (K pkg/controllers/state/cluster.go UpdateBufferPodCounts).

Virtual pods never run, so the warm node has pulled no workload image (unless the data volume comes from an image
snapshot): headroom saves the launch and boot of a node, not the pull (infra/gpu/recovery.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from infra.catalog.data import load_data
from infra.catalog.gpus import CATALOG
from infra.config import GpuPool, StackConfig
from infra.gpu.limits import GPU_RESOURCE, counted
from infra.gpu.placement import NODEPOOL_LABEL
from infra.gpu.pools import pool_taints

CAPACITY_BUFFER_API_VERSION = "autoscaling.x-k8s.io/v1beta1"
# The only strategy Karpenter 1.14.1 knows (K pkg/apis/autoscaling/v1beta1/constants.go); also the CRD's default.
ACTIVE_CAPACITY = "buffer.x-k8s.io/active-capacity"
# Karpenter lists buffers in every namespace (K provisioning/buffers.go listAllBuffers); the template must be in the
# buffer's own namespace (K pkg/utils/apps/resolve.go ResolvePodTemplateRef). Karpenter's namespace keeps them
# beside the controller that reads them.
NAMESPACE = "kube-system"
# Never pulled: virtual pods are not created. A template still needs a container (core/v1 PodSpec).
PLACEHOLDER_IMAGE = "registry.k8s.io/pause:3.10"
_PRICES = load_data("gpu_prices")


def uses_headroom(cfg: StackConfig) -> bool:
    return any(pool.headroom for pool in cfg.effective_gpu_pools)


def headroom_name(pool: GpuPool) -> str:
    return f"{pool.name}-headroom"


def placeholder_template(pool: GpuPool) -> dict[str, Any]:
    """The PodTemplate's `template`: one whole GPU of this pool, and nothing that would let it land elsewhere (the
    pool's taints tolerated, the pool selected by Karpenter's own label)."""
    tolerations = [{"key": t["key"], "operator": "Equal", "value": t["value"], "effect": t["effect"]}
                   for t in pool_taints(pool)]  # fmt: skip
    one_gpu = {GPU_RESOURCE: "1"}
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": headroom_name(pool)}},
        "spec": {
            "nodeSelector": {NODEPOOL_LABEL: pool.name},
            "tolerations": tolerations,
            "containers": [
                {"name": "headroom", "image": PLACEHOLDER_IMAGE, "resources": {"requests": one_gpu, "limits": one_gpu}}
            ],
        },
    }


def capacity_buffer_spec(pool: GpuPool) -> dict[str, Any]:
    """`replicas` chunks of one GPU each (the CRD requires replicas or limits with a podTemplateRef)."""
    return {
        "podTemplateRef": {"name": headroom_name(pool)},
        "replicas": pool.headroom,
        "provisioningStrategy": ACTIVE_CAPACITY,
    }


def headroom_manifests(pool: GpuPool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PodTemplate and the CapacityBuffer, as the API server would receive them."""
    metadata = {"name": headroom_name(pool), "namespace": NAMESPACE}
    template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": metadata, "template": placeholder_template(pool)}
    buffer = {
        "apiVersion": CAPACITY_BUFFER_API_VERSION,
        "kind": "CapacityBuffer",
        "metadata": dict(metadata),
        "spec": capacity_buffer_spec(pool),
    }
    return template, buffer


@dataclass(frozen=True)
class WarmNodes:
    """The cheapest single-type way to hold a pool's headroom, by On-Demand list price (Karpenter also picks by price;
    it may mix types, so this is an estimate): `nodes` x `instance_type`."""

    instance_type: str
    nodes: int
    usd_per_hour: float

    @property
    def gpus(self) -> int:
        return self.nodes * CATALOG[self.instance_type].gpu_count


def warm_nodes(pool: GpuPool) -> WarmNodes | None:
    """None: no headroom, or none of the pool's types has a price in infra/data/gpu_prices.json."""
    if not pool.headroom:
        return None
    prices = _PRICES["on_demand_usd_per_hour"]
    options = []
    for name in pool.matched_types:
        if name in prices:
            nodes = math.ceil(pool.headroom / CATALOG[name].gpu_count)
            options.append(WarmNodes(name, nodes, round(nodes * prices[name], 4)))
    return min(options, key=lambda w: (w.usd_per_hour, w.instance_type), default=None)


def headroom_usage(pool: GpuPool, initialized: bool) -> dict[str, int]:
    """What the warm nodes add to the pool's usage, counted as Karpenter counts every node (limits.counted)."""
    warm = warm_nodes(pool)
    if warm is None:
        return {}
    one = counted(pool, CATALOG[warm.instance_type], initialized)
    return {resource: amount * warm.nodes for resource, amount in one.items()}


def price_note() -> str:
    return f"{_PRICES['region']} On-Demand list price, {_PRICES['generated_at'][:10]}; Spot costs at most that"
