"""One provisioning round of Karpenter over the placement model (infra/gpu/placement.py): which claims it opens,
which pool each pending pod lands on, and which pods stay pending (kubernetes-sigs/karpenter v1.14.1; S =
pkg/controllers/provisioning/scheduling). The rules, with their sources, are listed in placement.py's docstring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from infra.gpu import requirements as reqs
from infra.gpu.placement import InstanceType, Pod, PoolOffer, Requirements, provisioning_tolerates

# What a general (CPU) pool's unlisted types offer: no extended resource (K pkg/apis/v1/labels.go WellKnownResources).
_GENERAL_RESOURCES = frozenset({"cpu", "memory", "pods", "ephemeral-storage"})


def _fits(allocatable: Mapping[str, float], requests: Mapping[str, float]) -> bool:
    return all(allocatable.get(name, 0) >= amount for name, amount in requests.items())


@dataclass
class Claim:
    """A NodeClaim opened in one scheduling round: its pool, requirements so far, the types that still hold all its
    pods, and their summed requests (one `pods` each: K pkg/utils/resources RequestsForPods)."""

    pool: PoolOffer
    requirements: Requirements
    types: list[InstanceType] | None
    pods: list[Pod] = field(default_factory=list)
    requests: dict[str, float] = field(default_factory=dict)

    def try_add(self, pod: Pod) -> bool:
        """S/nodeclaim.go CanAdd then Add: taints, compatibility, then the types that still fit."""
        if not provisioning_tolerates(self.pool.taints, pod.tolerations):
            return False
        incoming = pod.requirements()
        if not reqs.compatible(self.requirements, incoming, self.pool.well_known):
            return False
        merged = reqs.merged(self.requirements, incoming)
        total = dict(self.requests)
        for name, amount in {**pod.requests, "pods": 1}.items():
            total[name] = total.get(name, 0) + amount
        if self.types is None:  # a general pool: CPU types, no extended resource
            if not set(total) <= _GENERAL_RESOURCES:
                return False
            remaining = None
        else:
            remaining = [
                t
                for t in self.types
                if reqs.intersects(t.requirements, merged) and _fits(t.allocatable, total) and t.has_offering(merged)
            ]
            if not remaining:
                return False
        self.requirements, self.types, self.requests = merged, remaining, total
        self.pods.append(pod)
        return True

    @property
    def gpus(self) -> int:
        """The fewest GPUs a type the claim may still launch has (what the bill is at least)."""
        return int(min((t.capacity.get("nvidia.com/gpu", 0) for t in self.types or []), default=0))


def _within_limits(offer: PoolOffer, remaining: Mapping[str, float]) -> list[InstanceType] | None:
    """S/scheduler.go L706-724, L1069-1082: no type whose capacity exceeds what the limits leave."""
    types = offer.instance_types
    if types is None or not remaining:
        return types
    return [t for t in types if all(t.capacity.get(name, 0) <= left for name, left in remaining.items())]


@dataclass
class Schedule:
    """One provisioning round: the claims opened, where each pod went (a claim, or None: pending)."""

    claims: list[Claim]
    placed: list[Claim | None]


def schedule(
    pods: Iterable[Pod], offers: Iterable[PoolOffer], used: Mapping[str, Mapping[str, float]] = {}
) -> Schedule:
    """Karpenter's round for pending pods (S/scheduler.go Solve, trySchedule, add): each pod goes onto an open claim
    first, else a new claim of the first pool (in weight order) whose limits and requirements take it; a pod nothing
    takes is relaxed and retried. `used`: per pool, what its existing nodes already count against its limits."""
    ordered = [o for o in in_karpenters_order(offers) if not o.static]
    remaining = {
        o.name: {k: v - used.get(o.name, {}).get(k, 0) for k, v in o.limits.items()} for o in ordered if o.limits
    }
    claims: list[Claim] = []
    placed: list[Claim | None] = []
    for pod in pods:
        found = None
        for attempt in pod.relaxations():
            found = _add(attempt, ordered, claims, remaining)
            if found:
                break
        placed.append(found)
    return Schedule(claims, placed)


def _add(pod: Pod, ordered: list[PoolOffer], claims: list[Claim], remaining: dict) -> Claim | None:
    for claim in sorted(claims, key=lambda c: len(c.pods)):  # S/scheduler.go L598: fewest pods first
        if claim.try_add(pod):
            return claim
    for offer in ordered:
        left = remaining.get(offer.name, {})
        if left.get("nodes", 1) <= 0:
            continue
        types = _within_limits(offer, left)
        if types is not None and not types:
            continue
        claim = Claim(offer, dict(offer.template), types)
        if claim.try_add(pod):
            claims.append(claim)
            if left and claim.types:  # S/scheduler.go L786, L1049-1066 subtractMax
                for name in left:
                    left[name] -= max(t.capacity.get(name, 0) for t in claim.types)
            return claim
    return None


def takes(offer: PoolOffer, pod: Pod) -> bool:
    """Whether Karpenter could launch a node of this pool for the pod (alone, some relaxation of it)."""
    return not offer.static and any(
        Claim(offer, dict(offer.template), _within_limits(offer, offer.limits)).try_add(p) for p in pod.relaxations()
    )


def in_karpenters_order(offers: Iterable[PoolOffer]) -> list[PoolOffer]:
    """Highest weight first; on a tie, the name later in the alphabet first (OrderByWeight)."""
    return sorted(offers, key=lambda o: (-o.weight, [-ord(c) for c in o.name]))


def candidate_pools(pod: Pod, offers: Iterable[PoolOffer]) -> list[str]:
    """Every pool that could take the pod, in the order Karpenter tries them."""
    return [o.name for o in in_karpenters_order(offers) if takes(o, pod)]


def lands_on(pod: Pod, offers: Iterable[PoolOffer], used: Mapping[str, Mapping[str, float]] = {}) -> str | None:
    """The pool Karpenter launches for the pod, None if it stays pending."""
    (claim,) = schedule([pod], offers, used).placed
    return claim.pool.name if claim else None
