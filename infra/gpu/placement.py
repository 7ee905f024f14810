"""Which pool a pending pod can land on: a small model of the scheduling checks Karpenter makes, each rule citing the
upstream code it follows (kubernetes-sigs/karpenter v1.14.1, the core that karpenter-provider-aws v1.14.1 pins).

Tests use it as their oracle; `render` prints its pool table from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]


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
