"""The placement model against Karpenter's own scheduling tests: each case in tests/data/karpenter_conformance.json is
transcribed from kubernetes-sigs/karpenter v1.14.1 (file and line in the case), with the fake cloud provider's
instance types, and the model must reach the outcome the upstream test asserts. A case the model cannot reach is a
known limit, listed in README ("What the placement model does not cover") by its id, and kept here as an xfail that
turns into a failure the day the model covers it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from infra.gpu import requirements as reqs
from infra.gpu.placement import InstanceType, Pod, PoolOffer, quantity
from infra.gpu.scheduling import schedule
from tests.conftest import PROJECT_ROOT

DATA = json.loads((PROJECT_ROOT / "tests" / "data" / "karpenter_conformance.json").read_text())
# Cases the model does not reach, each declared in README with its reason (strict: passing one fails the suite).
KNOWN_LIMITS = {
    "sched-L273": "the cheapest type is launched (fake price from resources); the model keeps every type that fits",
    "sched-L1522": "the cheapest type is launched; the model keeps every type that fits",
}


def instance_types(data: Mapping[str, Any]) -> list[InstanceType]:
    """Allocatable is capacity minus the fake provider's kube-reserved (no eviction threshold, no system-reserved)."""
    overhead = {name: quantity(name, value) for name, value in data["overhead"].items()}
    found = []
    for entry in data["instance_types"]:
        capacity = {name: quantity(name, value) for name, value in entry["capacity"].items()}
        allocatable = {name: amount - overhead.get(name, 0) for name, amount in capacity.items()}
        found.append(
            InstanceType(
                entry["name"], reqs.from_expressions(entry["requirements"]), allocatable, capacity, entry["offerings"]
            )
        )
    return found


def offers(case: Mapping[str, Any], data: Mapping[str, Any] = DATA) -> list[PoolOffer]:
    well_known = reqs.WELL_KNOWN | set(data["well_known_extra"]["keys"])
    types = instance_types(data)
    return [
        PoolOffer(
            name=pool["name"],
            weight=pool.get("weight", 0),
            taints=pool.get("taints", []),
            requirements=pool["requirements"],
            labels={**pool.get("labels", {}), "karpenter.sh/nodepool": pool["name"]},
            catalog=types,
            limits={k: quantity(k, v) for k, v in pool.get("limits", {}).items()},
            well_known=frozenset(well_known),
        )
        for pool in case["nodepools"]
    ]


def pods(case: Mapping[str, Any]) -> list[Pod]:
    return [
        Pod(
            requests={k: quantity(k, v) for k, v in p.get("requests", {}).items()},
            tolerations=p.get("tolerations", []),
            node_selector=p.get("nodeSelector", {}),
            affinity_terms=p.get("required", []),
            preferred_terms=[(weight, term) for weight, term in p.get("preferred", [])],
        )
        for p in case["pods"]
    ]


def outcome(case: Mapping[str, Any]) -> dict[str, Any]:
    """What the model says, in the terms of the case's `expect`."""
    used = {pool: {k: quantity(k, v) for k, v in amounts.items()} for pool, amounts in case.get("used", {}).items()}
    result = schedule(pods(case), offers(case), used)
    found: dict[str, Any] = {"pools": [c.pool.name if c else None for c in result.placed]}
    if "nodeclaims" in case["expect"]:
        found["nodeclaims"] = len(result.claims)
    if "labels" in case["expect"]:
        # The value each label can take on the node: the claim's requirement on it, narrowed by its types' own
        # requirements and offerings (a node is launched from one of them).
        claim = result.placed[0]
        found["labels"] = {key: sorted(_possible(claim, key, value)) for key, value in case["expect"]["labels"].items()}
    return found


def _possible(claim, key: str, wanted: str) -> set[str]:
    values = set()
    for t in claim.types or []:
        # An offering key takes its offerings' values; any other key its type's; a key the type leaves open, the
        # value asked for (the pool's own label, say).
        own = t.requirements.get(key)
        candidates = {o[key] for o in t.offerings or [] if key in o} or (set(own.values) if own else {wanted})
        values |= {v for v in candidates if key not in claim.requirements or claim.requirements[key].has(v)}
    return values


def expected(case: Mapping[str, Any]) -> dict[str, Any]:
    found = dict(case["expect"])
    if "labels" in found:
        found["labels"] = {key: [value] for key, value in found["labels"].items()}
    return found


def test_the_conformance_file_holds_at_least_forty_cases_each_citing_its_upstream_line():
    ids = [case["id"] for case in DATA["cases"]]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    for case in DATA["cases"]:
        path, _, line = case["source"].rpartition(" L")
        assert path.startswith("pkg/") and path.endswith("_test.go") and int(line) > 0, case["id"]


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: c["id"])
def test_the_model_reaches_karpenters_outcome(case):
    if case["id"] in KNOWN_LIMITS:
        pytest.xfail(KNOWN_LIMITS[case["id"]])
    assert outcome(case) == expected(case), f"{case['source']}: {case['it']}"


@pytest.mark.parametrize("case_id", sorted(KNOWN_LIMITS))
def test_every_known_limit_still_disagrees_and_readme_lists_it(case_id):
    (case,) = [c for c in DATA["cases"] if c["id"] == case_id]
    assert outcome(case) != expected(case)
    for path in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "README.zh-CN.md"):
        assert f"`{case_id}`" in path.read_text(), path.name
