"""Which pool a pending pod can land on: a small model of the checks Karpenter makes when it launches nodes for
pending pods, each rule citing the upstream code it follows (kubernetes-sigs/karpenter v1.14.1, the core that
karpenter-provider-aws v1.14.1 pins; K = that repository; S = K pkg/controllers/provisioning/scheduling).

- Static pools (`replicas`) are never launched for a pod (K provisioning/provisioner.go NewScheduler filters
  IsStatic); their nodes take pods the kube-scheduler places on them.
- Pools are tried by weight, highest first, a tie going to the name later in the alphabet
  (K pkg/utils/nodepool/nodepool.go OrderByWeight; provisioner.go L290-293).
- Every NoSchedule/NoExecute taint of the pool must be tolerated (K pkg/scheduling/taints.go ToleratesPod, called
  first by S/nodeclaim.go CanAdd L126).
- The pod's requirements (node selector, the first required affinity term, the heaviest preferred term: K
  pkg/scheduling/requirements.go L90-110) must be compatible with the pool's requirements, template labels,
  `karpenter.sh/nodepool` and the new node's own hostname (S/nodeclaimtemplate.go L83-84, S/nodeclaim.go L97, L133);
  infra/gpu/requirements.py ports that algebra.
- Some instance type must intersect the merged requirements, have an offering they allow and hold the requests of
  every pod on the claim plus one `pods` each in its allocatable (S/nodeclaim.go L541-600
  filterInstanceTypesByRequirements). An instance type's `nvidia.com/gpu` is its physical GPU count whatever the
  device plugin will advertise (karpenter-provider-aws pkg/providers/instancetype/types.go), and a NodeOverlay adds
  only what it names.
- A pool with limits offers only the types whose capacity fits what is left, and each new claim takes the largest
  capacity of its types off what is left; a pool with nothing left is skipped for the next (S/scheduler.go L706-724,
  L786 subtractMax, L1049-1082): the pod falls through to the next pool.
- A pod goes first onto a claim already opened in this round (fewest pods first), which narrows that claim's types to
  those that hold all its pods (S/scheduler.go L582-612 add, L658-693 addToInflightNode); only then a new claim.
- A pod nothing takes is relaxed and retried: the first of several required affinity terms is dropped, then the
  heaviest preferred term (S/scheduler.go L521-551 trySchedule, S/preferences.go L38-88).

Not modelled (README, "What the placement model does not cover"): DaemonSet overhead, topology spread and pod
(anti-)affinity, volumes, existing nodes, reserved-capacity fallback rules, minValues, a general pool's real types
(only its requirements are checked). infra/gpu/scheduling.py runs the round; tests use both as their oracle and
`render` prints its pool table from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from infra.catalog.gpus import CATALOG, EFA_RESOURCE, POD_ENI_RESOURCE, GpuType, requirement_holds
from infra.config.convert import PROJECT
from infra.gpu import requirements as reqs
from infra.gpu.requirements import OFFERING_KEYS, Requirement, Requirements

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]
Expression = Mapping[str, Any]

NODEPOOL_LABEL = "karpenter.sh/nodepool"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
HOSTNAME = "kubernetes.io/hostname"
# A well-known label Karpenter sets from the subnet's zone (karpenter-provider-aws v1.14 pkg/apis/v1/labels.go
# `LabelTopologyZoneID`, in WellKnownLabels): zone IDs are the same in every account, zone names are not.
ZONE_ID = "topology.k8s.aws/zone-id"
# The label of EFA pools' nodes: the EFA device plugin runs where it is (infra/efa.py), not on an instance list.
EFA_POOL_LABEL = f"{PROJECT}/efa"
# What the model leaves out, as render prints it under the pool table (README, "What the placement model follows").
NOT_MODELLED = ("DaemonSet overhead, topology spread, pod (anti-)affinity, volumes, existing nodes, reserved fallback, "
                "minValues, offering availability, general pools' types, which fitting type is cheapest")  # fmt: skip
# A claim's hostname is its own, unknown before launch: a pod naming one never fits a new claim (S/nodeclaim.go L97).
_NEW_HOSTNAME = Requirement(frozenset({"<new node>"}), False)


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


# Properties of the offering an instance launches in, not of its type: Karpenter matches them against offerings
# (K pkg/apis/v1/labels.go L108-111; karpenter-provider-aws adds the zone ID to each offering's requirements).
OFFERING_KEYS = (*OFFERING_KEYS, ZONE_ID)


def provisioning_tolerates(taints: Iterable[Taint], tolerations: Iterable[Toleration]) -> bool:
    """Karpenter's provisioning check, stricter than the kube-scheduler's: every taint, PreferNoSchedule included,
    must be tolerated (K pkg/scheduling/taints.go L83-95); such a taint is tolerated only as the last relaxation."""
    tolerations = list(tolerations)
    return all(any(tolerates(t, taint) for t in tolerations) for taint in taints)


# K preferences.go L132-147: the last relaxation, tried only after every affinity term (S/scheduler.go L146-151 turns
# it on when some pool has such a taint; without one it changes nothing).
_TOLERATE_PREFER_NO_SCHEDULE = {"operator": "Exists", "effect": "PreferNoSchedule"}


@dataclass(frozen=True)
class Pod:
    """What scheduling reads of a pending pod."""

    requests: Mapping[str, float] = field(default_factory=dict)
    tolerations: Sequence[Toleration] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity_terms: Sequence[Sequence[Expression]] = ()  # required node affinity: terms ORed, expressions ANDed
    preferred_terms: Sequence[tuple[int, Sequence[Expression]]] = ()  # (weight, expressions)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Pod:
        """From a pod spec (a Deployment's or Job's `spec.template.spec`). A resource given as a limit only is
        requested at that limit (Kubernetes defaults requests to limits)."""
        requests: dict[str, float] = {}
        for container in spec.get("containers", []):
            resources = container.get("resources") or {}
            asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
            for name, value in asked.items():
                requests[name] = requests.get(name, 0) + quantity(name, value)
        affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = [term.get("matchExpressions", []) for term in required.get("nodeSelectorTerms", [])]
        preferred = [
            (p.get("weight", 1), p["preference"].get("matchExpressions", []))
            for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        ]
        return cls(requests, spec.get("tolerations") or [], spec.get("nodeSelector") or {}, terms, preferred)

    def requirements(self) -> Requirements:
        """K pkg/scheduling/requirements.go L90-110: the node selector, the heaviest preferred term treated as
        required, and the first required term."""
        found = reqs.from_labels(self.node_selector)
        if self.preferred_terms:
            reqs.from_expressions(max(self.preferred_terms, key=lambda p: p[0])[1], found)
        if self.affinity_terms:
            reqs.from_expressions(self.affinity_terms[0], found)
        return found

    def relaxed(self) -> Pod | None:
        """K preferences.go L38-88: drop the first of several required terms, else the heaviest preferred term, else
        tolerate PreferNoSchedule taints."""
        if len(self.affinity_terms) > 1:
            return Pod(self.requests, self.tolerations, self.node_selector, self.affinity_terms[1:],
                       self.preferred_terms)  # fmt: skip
        if self.preferred_terms:
            heaviest = max(range(len(self.preferred_terms)), key=lambda i: self.preferred_terms[i][0])
            rest = [p for i, p in enumerate(self.preferred_terms) if i != heaviest]
            return Pod(self.requests, self.tolerations, self.node_selector, self.affinity_terms, rest)
        if _TOLERATE_PREFER_NO_SCHEDULE not in self.tolerations:
            tolerations = [*self.tolerations, _TOLERATE_PREFER_NO_SCHEDULE]
            return Pod(self.requests, tolerations, self.node_selector, self.affinity_terms, self.preferred_terms)
        return None

    def relaxations(self) -> list[Pod]:
        found = [self]
        while (looser := found[-1].relaxed()) is not None:
            found.append(looser)
        return found


# Kubernetes quantity suffixes (k8s.io/apimachinery pkg/api/resource/suffix.go): binary, decimal, milli.
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}


def quantity(name: str, value: Any) -> float:
    """cpu in cores, memory in MiB (as the catalog holds them), anything else as a count."""
    text = str(value)
    number = next((float(text[: -len(s)]) * factor for s, factor in _SUFFIXES.items() if text.endswith(s)), None)
    number = float(text) if number is None else number
    return number / 2**20 if name == "memory" else number


@dataclass(frozen=True)
class InstanceType:
    """An instance type as the scheduler sees it: requirements (its labels), allocatable (capacity minus overhead:
    what pods fit into), capacity (what limits count) and offerings (None: whatever zone and capacity type the
    requirements allow; the catalog does not know availability)."""

    name: str
    requirements: Requirements
    allocatable: Mapping[str, float]
    capacity: Mapping[str, float]
    offerings: Sequence[Mapping[str, str]] | None = None

    def has_offering(self, requirements: Requirements) -> bool:
        """K pkg/cloudprovider/types.go L556: some available offering is compatible with the requirements."""
        if self.offerings is None:
            return not any(
                key in requirements and requirements[key].operator == "DoesNotExist" for key in OFFERING_KEYS
            )
        return any(
            all(key not in requirements or requirements[key].has(value) for key, value in offering.items())
            for offering in self.offerings
        )


def _catalog_type(gpu_type: GpuType, labels: Mapping[str, str], overlays: Sequence[Mapping[str, Any]]) -> InstanceType:
    """A catalog type in a pool: allocatable from Karpenter's reference, physical GPUs, EFA and branch interfaces
    (Karpenter knows each per type, whatever will run on the node), plus what every matching overlay names."""
    extended = {
        "nvidia.com/gpu": gpu_type.gpu_count,
        EFA_RESOURCE: gpu_type.efa,
        POD_ENI_RESOURCE: gpu_type.pod_eni,
        "pods": gpu_type.pods,
    }
    allocatable = {"cpu": gpu_type.allocatable_millicpu / 1000, "memory": gpu_type.allocatable_memory_mib, **extended}
    capacity = {"cpu": gpu_type.vcpu, "memory": gpu_type.memory_mib, **extended}
    every_label = {**gpu_type.labels, **labels}
    for overlay in overlays:
        if all(requirement_holds(r, every_label) for r in overlay["requirements"]):
            added = {k: float(v) for k, v in overlay.get("capacity", {}).items()}
            allocatable, capacity = {**allocatable, **added}, {**capacity, **added}
    return InstanceType(gpu_type.name, reqs.from_labels(gpu_type.labels), allocatable, capacity)


@dataclass(frozen=True)
class PoolOffer:
    """What Karpenter knows of one NodePool when it launches for a pod: the rendered spec and overlays."""

    name: str
    weight: int
    taints: Sequence[Taint]
    requirements: Sequence[Expression]
    labels: Mapping[str, str]
    overlays: Sequence[Mapping[str, Any]] = ()  # NodeOverlay specs scoped to this pool
    # The types it may launch: the GPU catalog, given types (conformance cases), or None: a pool of general (CPU)
    # types the model does not list, checked by requirements only.
    catalog: Mapping[str, GpuType] | Sequence[InstanceType] | None = None
    static: bool = False  # `replicas` set: Karpenter keeps its nodes but never launches one for a pod
    limits: Mapping[str, float] = field(default_factory=dict)  # spec.limits, in the units of `quantity`
    well_known: frozenset[str] = reqs.WELL_KNOWN  # keys a pod may select though the pool does not define them

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
            limits={k: quantity(k, v) for k, v in (spec.get("limits") or {}).items()},
        )

    @property
    def capacity_types(self) -> list[str]:
        return [v for r in self.requirements if r["key"] == CAPACITY_TYPE for v in r["values"]]

    @cached_property
    def template(self) -> Requirements:
        """S/nodeclaimtemplate.go L83-84: the pool's requirements and labels; S/nodeclaim.go L97: a new hostname."""
        found = reqs.from_labels(self.labels, reqs.from_expressions(self.requirements))
        return reqs.add(found, HOSTNAME, _NEW_HOSTNAME)

    @cached_property
    def instance_types(self) -> list[InstanceType] | None:
        """The types the pool's requirements admit, overlays applied (None: a general pool's unlisted types)."""
        if self.catalog is None:
            return None
        if isinstance(self.catalog, Mapping):
            found = [_catalog_type(t, self.labels, self.overlays) for t in self.catalog.values()]
        else:
            found = list(self.catalog)
        return [t for t in found if reqs.intersects(t.requirements, self.template) and t.has_offering(self.template)]

    def types(self) -> list[GpuType]:
        """The catalog types the pool admits."""
        names = {t.name for t in self.instance_types or []}
        return [t for t in CATALOG.values() if t.name in names]
