"""Every way a pod this cluster admits can make Karpenter launch a GPU node that never initializes for it, and what
closes each (README, "Nodes that never start"). K = kubernetes-sigs/karpenter v1.14.1, P = aws/karpenter-provider-aws
v1.14.1.

Why such a node bills until someone notices: Karpenter marks a NodeClaim initialized only once every resource its
pods request (non-zero) is in the Node's allocatable (K pkg/controllers/nodeclaim/lifecycle/initialization.go L82-85,
RequestedResourcesRegistered L130-146; the claim's requests are its pods', provisioning/scheduling/nodeclaim.go L252),
never disrupts a node that has not initialized (K pkg/controllers/state/statenode.go L219-221 ValidateNodeDisruptable:
"node isn't initialized", so not even an empty one is consolidated), and times out only launch (5 min) and
registration (15 min; K lifecycle/liveness.go L52, L59), not initialization.

So a pod strands a node when Karpenter believes the instance type has a resource the pod requests and the node never
registers it. What Karpenter believes a type has is fixed (P pkg/providers/instancetype/types.go L336-347), plus what a
NodeOverlay adds; what a node of this program registers:

| resource | Karpenter believes | a node registers |
|---|---|---|
| cpu, memory, pods, ephemeral-storage | yes | yes (the kubelet) |
| `nvidia.com/gpu` | physical GPUs | whole-GPU and MIG pools; a time-sliced pool none (rename-by-default: limits.py) |
| `nvidia.com/gpu.shared` | time-sliced pools' NodeOverlays | time-sliced pools (Bottlerocket's plugin) |
| `vpc.amazonaws.com/efa` | the type's EFA interfaces | where the EFA device plugin runs (infra/efa.py) |
| `vpc.amazonaws.com/pod-eni` | trunk-capable types (every GPU type) | never (below) |
| amd.com/gpu, aws.amazon.com/neuron(core), habana.ai/gaudi | 0 on NVIDIA types | - (never launched) |
| hugepages-*, any other name | in no type's capacity, no overlay of ours adds one | - (never launched) |

`pod-eni` is advertised only by the VPC resource controller, on nodes whose aws-node runs with ENABLE_POD_ENI=true
(EKS user guide, "Configure the Amazon VPC CNI plugin for Kubernetes for security groups for Amazon EKS Pods", step
3); this program never sets it. A resource in no type's capacity launches nothing: no type fits the pod (K
nodeclaim.go filterInstanceTypesByRequirements; "no instance type satisfied resources" for hugepages-2Mi in
aws/karpenter-provider-aws#3315, the request karpenter#751 tracks).

That leaves three ways (CASES), each closed here: EFA by pool design (the plugin on every node of an EFA type), the
other two by the admission policy (infra/admission.py). Pods Karpenter never provisions for are no way in: DaemonSet
and static pods, pods already bound to a node (K pkg/utils/pod/scheduling.go L102-108 IsProvisionable).

Not closed, left to the bill bound (README): a node that never initializes for a reason of its own (driver, startup),
DaemonSets that request extended resources (their requests join every claim: nodeclaim.go addDaemonRequests), pods
with DRA resource claims (Karpenter ignores them by default, K pkg/operator/options/options.go L133).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from infra.catalog.gpus import CATALOG, EFA_RESOURCE, POD_ENI_RESOURCE
from infra.config import GpuPool
from infra.gpu.limits import GPU_RESOURCE, SHARED_GPU_RESOURCE, TIME_SLICING, pool_kind
from infra.gpu.placement import EFA_POOL_LABEL, NODEPOOL_LABEL, InstanceType, Pod, PoolOffer, untolerated
from infra.gpu.pools import GPU_TAINT, exists_tolerations
from infra.gpu.scheduling import schedule

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
KUBELET_RESOURCES = frozenset({"cpu", "memory", "pods", "ephemeral-storage"})
# What closes a case on a pool.
SERVED, REFUSED = "served", "refused at creation"


@dataclass(frozen=True)
class EfaPlugin:
    """Where the EFA device plugin's DaemonSet runs, as chart v0.5.30 templates/daemonset.yaml builds its affinity:
    one required term per key of `supportedInstanceLabels.keys`, each `key In values` over the one shared value list
    (terms are ORed), and only on nodes whose every taint it tolerates."""

    keys: Sequence[str]
    values: Sequence[str]
    tolerations: Sequence[Mapping[str, str]]

    def runs_on(self, labels: Mapping[str, str], taints: Iterable[Mapping[str, str]]) -> bool:
        selected = any(labels.get(key) in self.values for key in self.keys)
        return selected and not untolerated(taints, self.tolerations)

    def values_for_chart(self) -> dict:
        return {"keys": list(self.keys), "values": list(self.values)}


def efa_types(pools: Iterable[GpuPool]) -> list[str]:
    """The instance types with EFA interfaces that some GPU pool admits, in catalog order."""
    admitted = {name for pool in pools for name in pool.matched_types}
    return [name for name, gpu_type in CATALOG.items() if gpu_type.efa and name in admitted]


def efa_plugin(pools: Sequence[GpuPool]) -> EfaPlugin | None:
    """The plugin on every node whose type has EFA, whatever its pool: Karpenter attaches EFA interfaces to any node
    whose pods request them (P pkg/providers/instance/instance.go L706-713), so a pod asking for EFA is served on any
    pool of such a type instead of stranding it. The EFA pools' label stays a key, so their nodes get the plugin even
    for a type newer than the catalog. None: no pool admits a type with EFA."""
    types = efa_types(pools)
    if not types:
        return None
    with_efa = [pool for pool in pools if pool.efa or set(pool.matched_types) & set(types)]
    return EfaPlugin([EFA_POOL_LABEL, INSTANCE_TYPE], ["true", *types], exists_tolerations(with_efa))


def registered(pool: GpuPool, offer: PoolOffer, instance_type: InstanceType, plugin: EfaPlugin | None) -> frozenset:
    """What a node of this pool and type advertises once up (the table above)."""
    found = set(KUBELET_RESOURCES)
    found.add(SHARED_GPU_RESOURCE if pool_kind(pool) == TIME_SLICING else GPU_RESOURCE)
    labels = {INSTANCE_TYPE: instance_type.name, **offer.labels}
    if plugin is not None and plugin.runs_on(labels, offer.taints):
        found.add(EFA_RESOURCE)
    return frozenset(found)


def never_registered(
    pod: Pod, offer: PoolOffer, types: Sequence[InstanceType], pool: GpuPool, plugin: EfaPlugin | None
) -> str | None:
    """The first resource the pod requests that a node Karpenter may launch for it (any of `types`: it picks by
    price) never registers; None: every such node initializes."""
    for instance_type in types:
        missing = sorted(
            n for n, q in pod.requests.items() if q and n not in registered(pool, offer, instance_type, plugin)
        )
        if missing:
            return missing[0]
    return None


@dataclass(frozen=True)
class Stranded:
    pool: str
    resource: str


def stranded(
    pod: Pod, offers: Sequence[PoolOffer], pools: Mapping[str, GpuPool], plugin: EfaPlugin | None
) -> Stranded | None:
    """Where Karpenter launches a node for the pod that never initializes, and the resource it waits for."""
    (claim,) = schedule([pod], offers).placed
    if claim is None or claim.pool.name not in pools:
        return None  # pending (nothing launched), or a general pool
    missing = never_registered(pod, claim.pool, claim.types or [], pools[claim.pool.name], plugin)
    return Stranded(claim.pool.name, missing) if missing else None


@dataclass(frozen=True)
class Case:
    """One way to strand a GPU node: a pod that takes it (the probe; pinned to a pool to ask about that pool), the
    resource it waits for, and which pools it can reach."""

    name: str
    short: str  # as render's pool table names it
    resource: str
    requests: Mapping[str, float]
    tolerations: Sequence[Mapping[str, str]]
    closed_by: str
    why: str

    def reaches(self, pool: GpuPool) -> bool:
        if self.resource == GPU_RESOURCE:
            return pool_kind(pool) == TIME_SLICING
        if self.resource == EFA_RESOURCE:
            return any(CATALOG[name].efa for name in pool.matched_types)
        return True

    def probe(self, pool: str | None = None) -> Pod:
        return Pod(dict(self.requests), list(self.tolerations), {NODEPOOL_LABEL: pool} if pool else {})


GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}
CASES = (
    Case(
        "EFA on a pool without the EFA device plugin",
        "EFA",
        EFA_RESOURCE,
        {GPU_RESOURCE: 1, EFA_RESOURCE: 1},
        [GPU_TOLERATION],
        SERVED,
        "the EFA device plugin runs on every node of an EFA type (infra/efa.py)",
    ),
    Case(
        "whole GPUs on a time-sliced pool",
        "whole GPU",
        GPU_RESOURCE,
        {GPU_RESOURCE: 1},
        [{"operator": "Exists"}],  # a blanket toleration also tolerates the sharing taint
        REFUSED,
        "its nodes advertise only nvidia.com/gpu.shared; the pod must request that or select a whole-GPU pool",
    ),
    Case(
        "security groups for pods (vpc.amazonaws.com/pod-eni)",
        "pod-eni",
        POD_ENI_RESOURCE,
        {GPU_RESOURCE: 1, POD_ENI_RESOURCE: 1},
        [GPU_TOLERATION],
        REFUSED,
        "aws-node's ENABLE_POD_ENI is off in this cluster: no node ever advertises it",
    ),
)


def closed_cases(pool: GpuPool) -> list[Case]:
    """The cases that could reach this pool, each closed (render's pool table)."""
    return [case for case in CASES if not pool.static and case.reaches(pool)]
