"""Karpenter's node-selector requirement algebra, ported so the placement model decides compatibility as Karpenter
does (kubernetes-sigs/karpenter v1.14.1, K = that repository):

- one requirement per key is a set of values or its complement, with integer bounds (K pkg/scheduling/requirement.go
  L48-110 NewRequirementWithFlexibility: Gt N is Gte N+1, Lt N is Lte N-1, Exists is the empty complement,
  DoesNotExist the empty set); requirements on one key intersect (L181-214 Intersection, L220-254 HasIntersection);
- a pod's requirements are compatible with a NodeClaim's if every key the pod names is defined there, well known,
  or asked NotIn/DoesNotExist, and every shared key intersects (K pkg/scheduling/requirements.go L181-197 Compatible,
  L254-274 Intersects). Well known is a list of keys, not domains (infra/data/karpenter_labels.json).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.catalog.data import load_data

_LABELS = load_data("karpenter_labels")
WELL_KNOWN: frozenset[str] = frozenset(_LABELS["well_known"])
OFFERING_KEYS: tuple[str, ...] = tuple(_LABELS["offering_keys"])
NORMALIZED: Mapping[str, str] = _LABELS["normalized"]


def _within(value: str, gte: int | None, lte: int | None) -> bool:
    if gte is None and lte is None:
        return True
    try:
        number = int(value)
    except ValueError:
        return False  # a bound admits integers only (requirement.go withinBounds)
    return (gte is None or number >= gte) and (lte is None or number <= lte)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


@dataclass(frozen=True)
class Requirement:
    """The values one key may take: `values` (complement False) or all but `values` (complement True), in bounds."""

    values: frozenset[str]
    complement: bool
    gte: int | None = None
    lte: int | None = None

    @classmethod
    def of(cls, operator: str, values: Iterable[str] = ()) -> Requirement:
        values = [str(v) for v in values]
        if operator == "In":
            return cls(frozenset(values), False)
        if operator == "DoesNotExist":
            return cls(frozenset(), False)
        number = int(values[0]) if operator in ("Gt", "Gte", "Lt", "Lte") else 0
        bounds = {"Gt": (number + 1, None), "Gte": (number, None), "Lt": (None, number - 1), "Lte": (None, number)}
        bounds = bounds.get(operator, (None, None))
        return cls(frozenset(values) if operator == "NotIn" else frozenset(), True, *bounds)

    @property
    def operator(self) -> str:
        """K requirement.go L290-301: a bounded complement reads as Exists, an empty set as DoesNotExist."""
        if self.complement:
            return "NotIn" if self.values else "Exists"
        return "In" if self.values else "DoesNotExist"

    def has(self, value: str) -> bool:
        return (value in self.values) != self.complement and _within(value, self.gte, self.lte)

    def intersection(self, other: Requirement) -> Requirement:
        gte, lte = _max(self.gte, other.gte), _min(self.lte, other.lte)
        if gte is not None and lte is not None and gte > lte:
            return Requirement(frozenset(), False)
        if self.complement and other.complement:
            values = self.values | other.values
        elif self.complement:
            values = other.values - self.values
        elif other.complement:
            values = self.values - other.values
        else:
            values = self.values & other.values
        complement = self.complement and other.complement
        if not complement:
            return Requirement(frozenset(v for v in values if _within(v, gte, lte)), False)
        return Requirement(frozenset(v for v in values if _within(v, gte, lte)), True, gte, lte)

    def intersects(self, other: Requirement) -> bool:
        gte, lte = _max(self.gte, other.gte), _min(self.lte, other.lte)
        if gte is not None and lte is not None and gte > lte:
            return False
        if self.complement and other.complement:
            return True
        if self.complement:
            return any(v not in self.values and _within(v, gte, lte) for v in other.values)
        if other.complement:
            return any(v not in other.values and _within(v, gte, lte) for v in self.values)
        return any(v in other.values and _within(v, gte, lte) for v in self.values)


Requirements = dict[str, Requirement]


def add(into: Requirements, key: str, requirement: Requirement) -> Requirements:
    """K requirements.go Add: a key given twice keeps the intersection."""
    key = NORMALIZED.get(key, key)
    into[key] = into[key].intersection(requirement) if key in into else requirement
    return into


def from_expressions(expressions: Iterable[Mapping[str, Any]], into: Requirements | None = None) -> Requirements:
    found: Requirements = {} if into is None else into
    for e in expressions:
        add(found, e["key"], Requirement.of(e["operator"], e.get("values") or []))
    return found


def from_labels(labels: Mapping[str, str], into: Requirements | None = None) -> Requirements:
    return from_expressions(({"key": k, "operator": "In", "values": [v]} for k, v in labels.items()), into)


def merged(*sets: Requirements) -> Requirements:
    found: Requirements = {}
    for requirements in sets:
        for key, requirement in requirements.items():
            add(found, key, requirement)
    return found


def _both_negative(existing: Requirement, incoming: Requirement) -> bool:
    return incoming.operator in ("NotIn", "DoesNotExist") and existing.operator in ("NotIn", "DoesNotExist")


def intersects(existing: Requirements, incoming: Requirements) -> bool:
    """K requirements.go L254-274: every key both define intersects (two negative requirements always do)."""
    return all(
        existing[key].intersects(incoming[key]) or _both_negative(existing[key], incoming[key])
        for key in existing.keys() & incoming.keys()
    )


def compatible(existing: Requirements, incoming: Requirements, allow_undefined: frozenset[str] = WELL_KNOWN) -> bool:
    """K requirements.go L181-197: a custom key the NodeClaim does not define is denied unless asked NotIn or
    DoesNotExist; a well-known one is allowed; then every shared key must intersect."""
    for key, requirement in incoming.items():
        if key in allow_undefined or key in existing or requirement.operator in ("NotIn", "DoesNotExist"):
            continue
        return False
    return intersects(existing, incoming)
