"""Which pool a pending pod can land on: a small model of the checks Karpenter makes when it launches a node for a
pod, each rule citing the upstream code it follows (kubernetes-sigs/karpenter v1.14.1, the core that
karpenter-provider-aws v1.14.1 pins; K = that repository).

- Static pools (`replicas`) are never launched for a pod (K provisioning/provisioner.go NewScheduler filters
  IsStatic); their nodes take pods the kube-scheduler places on them.
- Pools are tried by weight, highest first, a tie going to the name later in the alphabet
  (K pkg/utils/nodepool/nodepool.go OrderByWeight; provisioner.go L290-293).
- Every NoSchedule/NoExecute taint of the pool must be tolerated (K pkg/scheduling/taints.go ToleratesPod, called
  first by scheduling/nodeclaim.go CanAdd).
- The pod's node selector and required node affinity must fit the pool's requirements, template labels and
  `karpenter.sh/nodepool`; a label the pool does not define is allowed only if it is well known (or the operator is
  NotIn/DoesNotExist) (K pkg/scheduling/requirements.go Compatible with AllowUndefinedWellKnownLabels).
- Some instance type the pool admits must satisfy those requirements and hold the pod's requests in its capacity,
  NodeOverlays applied (K scheduling/nodeclaim.go filterInstanceTypesByRequirements: compatible() and fits()). An
  instance type's `nvidia.com/gpu` is its physical GPU count whatever the device plugin will advertise
  (karpenter-provider-aws pkg/providers/instancetype/types.go), and an overlay only adds what it names.

CPU and memory are checked against the type's vCPUs and memory, without kubelet and daemonset overhead. Tests use this
module as their oracle; `render` prints its pool table from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.catalog.gpus import CATALOG, EFA_RESOURCE, GpuType, requirement_holds
from infra.config.convert import PROJECT

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]
Requirement = Mapping[str, Any]

NODEPOOL_LABEL = "karpenter.sh/nodepool"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
# A well-known label Karpenter sets from the subnet's zone (karpenter-provider-aws v1.14 pkg/apis/v1/labels.go
# `LabelTopologyZoneID`, in WellKnownLabels): zone IDs are the same in every account, zone names are not.
ZONE_ID = "topology.k8s.aws/zone-id"
# Properties of the offering an instance launches in (capacity type, zone), not of its type: Karpenter matches them
# against offerings (karpenter-provider-aws pkg/providers/instancetype/offering), so the catalog has no such label.
OFFERING_KEYS = (CAPACITY_TYPE, ZONE_ID)
# The label of EFA pools' nodes: the EFA device plugin runs where it is (infra/efa.py), not on an instance list.
EFA_POOL_LABEL = f"{PROJECT}/efa"
# Label domains Karpenter treats as well known (K pkg/apis/v1/labels.go WellKnownLabels and RestrictedLabelDomains;
# karpenter-provider-aws pkg/apis/v1/labels.go adds karpenter.k8s.aws): a pool need not define them.
WELL_KNOWN_PREFIXES = ("kubernetes.io/", "node.kubernetes.io/", "topology.kubernetes.io/", "karpenter.sh/",
                       "karpenter.k8s.aws/", "topology.k8s.aws/")  # fmt: skip


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' ToleratesTaint (k8s.io/api core/v1 toleration.go, which Karpenter's pkg/scheduling/taints.go
    ToleratesPod calls): an empty effect matches every effect; an empty key with Exists matches every key; Exists
    ignores the value, Equal (the default operator) compares it."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return operator == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    return operator == "Exists" or toleration.get("value", "") == taint.get("value", "")


def untolerated(taints: Iterable[Taint], tolerations: Iterable[Toleration]) -> list[Taint]:
    """The taints no toleration tolerates. Karpenter's Taints.ToleratesPod (pkg/scheduling/taints.go) needs every
    NoSchedule and NoExecute taint tolerated; PreferNoSchedule never blocks."""
    tolerations = list(tolerations)
    return [
        taint
        for taint in taints
        if taint.get("effect") != "PreferNoSchedule" and not any(tolerates(t, taint) for t in tolerations)
    ]


@dataclass(frozen=True)
class Pod:
    """What scheduling reads of a pending pod."""

    requests: Mapping[str, float] = field(default_factory=dict)
    tolerations: Sequence[Toleration] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity_terms: Sequence[Sequence[Requirement]] = ()  # required node affinity: terms ORed, expressions ANDed

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Pod:
        """From a pod spec (a Deployment's or Job's `spec.template.spec`). A resource given as a limit only is
        requested at that limit (Kubernetes defaults requests to limits)."""
        requests: dict[str, float] = {}
        for container in spec.get("containers", []):
            resources = container.get("resources") or {}
            asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
            for name, value in asked.items():
                requests[name] = requests.get(name, 0) + _quantity(name, value)
        affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        terms = [term.get("matchExpressions", []) for term in affinity.get("nodeSelectorTerms", [])]
        return cls(requests, spec.get("tolerations") or [], spec.get("nodeSelector") or {}, terms)

    def requirement_sets(self) -> list[list[Requirement]]:
        """The node selector ANDed into each affinity term (one set when there is no affinity)."""
        selector = [{"key": k, "operator": "In", "values": [v]} for k, v in self.node_selector.items()]
        return [[*selector, *term] for term in self.affinity_terms] or [selector]


_MEMORY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def _quantity(name: str, value: Any) -> float:
    """cpu in cores, memory in MiB (as the catalog holds them), anything else as a count."""
    text = str(value)
    if name == "cpu" and text.endswith("m"):
        return float(text[:-1]) / 1000
    if name == "memory":
        for suffix, mib in _MEMORY_MIB.items():
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * mib
        return float(text) / (1024 * 1024)
    return float(text)


@dataclass(frozen=True)
class PoolOffer:
    """What Karpenter knows of one NodePool when it launches for a pod: the rendered spec and overlays."""

    name: str
    weight: int
    taints: Sequence[Taint]
    requirements: Sequence[Requirement]
    labels: Mapping[str, str]
    overlays: Sequence[Mapping[str, Any]] = ()  # NodeOverlay specs scoped to this pool
    catalog: Mapping[str, GpuType] | None = None  # None: a pool of general (CPU) types, not in the GPU catalog
    static: bool = False  # `replicas` set: Karpenter keeps its nodes but never launches one for a pod

    @classmethod
    def from_spec(
        cls, name: str, spec: Mapping[str, Any], overlays: Sequence[Mapping[str, Any]] = (), gpu: bool = True
    ) -> PoolOffer:
        template = spec["template"]
        return cls(
            name=name,
            weight=spec.get("weight") or 0,
            taints=template["spec"].get("taints", []),
            requirements=template["spec"]["requirements"],
            labels={**(template.get("metadata") or {}).get("labels", {}), NODEPOOL_LABEL: name},
            overlays=overlays,
            catalog=CATALOG if gpu else None,
            static="replicas" in spec,
        )

    @property
    def capacity_types(self) -> list[str]:
        return [v for r in self.requirements if r["key"] == CAPACITY_TYPE for v in r["values"]]

    def offerings(self) -> dict[str, set[str] | None]:
        """Per offering key, the values the pool allows (None: any)."""
        found: dict[str, set[str] | None] = dict.fromkeys(OFFERING_KEYS)
        for r in self.requirements:
            if r["key"] in found and r["operator"] == "In":
                found[r["key"]] = set(r["values"])
        return found

    def types(self) -> list[GpuType]:
        """The catalog types the pool's requirements admit (capacity type and zone are not type properties)."""
        if self.catalog is None:
            return []
        type_requirements = [r for r in self.requirements if r["key"] not in OFFERING_KEYS]
        return [t for t in self.catalog.values() if all(requirement_holds(r, t.labels) for r in type_requirements)]

    def capacity(self, gpu_type: GpuType) -> dict[str, float]:
        """The type's capacity as the scheduler sees it in this pool: physical GPUs and EFA interfaces (Karpenter
        knows both per type, whatever will run on the node), plus every matching overlay."""
        found = {
            "cpu": gpu_type.vcpu,
            "memory": gpu_type.memory_mib,
            "nvidia.com/gpu": gpu_type.gpu_count,
            EFA_RESOURCE: gpu_type.efa,
        }
        labels = {**gpu_type.labels, **self.labels}
        for overlay in self.overlays:
            if all(requirement_holds(r, labels) for r in overlay["requirements"]):
                found.update({k: float(v) for k, v in overlay.get("capacity", {}).items()})
        return found


def _fits_labels(
    requirements: Iterable[Requirement], labels: Mapping[str, str], offerings: Mapping[str, set[str] | None]
) -> bool:
    for r in requirements:
        key, operator = r["key"], r["operator"]
        if key in offerings:
            allowed = offerings[key]
            if allowed is None:  # the pool allows any: a well-known key, some offering will do
                continue
            if operator == "In" and not allowed & set(r["values"]):
                return False
            if operator == "NotIn" and allowed <= set(r["values"]):
                return False
            continue
        if key in labels:
            if not requirement_holds(r, labels):
                return False
        elif operator in ("NotIn", "DoesNotExist"):
            continue
        elif not key.startswith(WELL_KNOWN_PREFIXES):
            return False  # a custom label the pool does not define: denied (requirements.go Compatible)
    return True


def takes(offer: PoolOffer, pod: Pod) -> bool:
    """Whether Karpenter could launch a node of this pool for the pod."""
    if offer.static:  # static pools are left out of provisioning (K provisioning/provisioner.go L276-279 IsStatic)
        return False
    if untolerated(offer.taints, pod.tolerations):
        return False
    if offer.catalog is None:  # general pool: no GPU resource of any kind
        if any(name.startswith("nvidia.com/") for name in pod.requests):
            return False
        return any(_fits_labels(rs, offer.labels, offer.offerings()) for rs in pod.requirement_sets())
    for gpu_type in offer.types():
        labels = {**gpu_type.labels, **offer.labels}
        capacity = offer.capacity(gpu_type)
        if all(capacity.get(name, 0) >= amount for name, amount in pod.requests.items()) and any(
            _fits_labels(rs, labels, offer.offerings()) for rs in pod.requirement_sets()
        ):
            return True
    return False


def in_karpenters_order(offers: Iterable[PoolOffer]) -> list[PoolOffer]:
    """Highest weight first; on a tie, the name later in the alphabet first (OrderByWeight)."""
    return sorted(offers, key=lambda o: (-o.weight, [-ord(c) for c in o.name]))


def candidate_pools(pod: Pod, offers: Iterable[PoolOffer]) -> list[str]:
    """Every pool that could take the pod, in the order Karpenter tries them."""
    return [o.name for o in in_karpenters_order(offers) if takes(o, pod)]


def lands_on(pod: Pod, offers: Iterable[PoolOffer]) -> str | None:
    """The pool Karpenter launches for the pod (the first that takes it), None if none does."""
    found = candidate_pools(pod, offers)
    return found[0] if found else None


def efa_pods_stranded_on(offers: Iterable[PoolOffer]) -> list[str]:
    """Pools without the EFA device plugin that Karpenter would launch for a whole-GPU pod requesting EFA that does
    not select an EFA pool: Karpenter launches such a node with EFA interfaces (the type has them), but nothing on it
    advertises `vpc.amazonaws.com/efa`, so the pod never starts there (README, Training pools)."""
    pod = Pod(
        requests={"nvidia.com/gpu": 1, EFA_RESOURCE: 1},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    offers = list(offers)
    first = lands_on(pod, offers)
    by_name = {o.name: o for o in offers}
    if first is None or by_name[first].labels.get(EFA_POOL_LABEL) == "true":
        return []
    return [name for name in candidate_pools(pod, offers) if by_name[name].labels.get(EFA_POOL_LABEL) != "true"]
