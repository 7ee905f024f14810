"""The critical path of a first `pulumi up`: the chain of creates that bounds the deploy's wall time.

Pure: takes the recorded registrations (tools/offline.py: urn, type, parent, dependencies, custom) and typical
create durations per resource type (`data/create_durations.json`, each figure with its source), and returns the
longest weighted chain. The engine creates every resource as soon as what it waits for exists, in parallel
(`pulumi up --parallel` is unbounded by default), so the estimate is that longest chain.

What a resource waits for, as the Python SDK and engine behave (pulumi 3.272, `pulumi/runtime/resource.py`,
`pulumi/runtime/rpc.py`):

- its recorded `dependencies` (data dependencies of its inputs and `depends_on`): the SDK sends
  RegisterResource only once their URNs resolved, and a custom resource's URN resolves when the engine answers
  its RegisterResource, which is after the create finished (`resolve_urn(resp.urn, ...)` after
  `monitor.RegisterResource(req)` in `register_resource`);
- its `parent`: the SDK awaits `opts.parent.urn` before registering a child (`_prepare_resource`), so a child of
  a custom resource waits for its create, and a child of a component waits for the component's own registration
  (which itself waited for the component's dependencies and parent);
- a dependency on a local component resource means its descendants: `_add_dependency` in `pulumi/runtime/rpc.py`
  ("Local component resources act as aggregations of their descendents ... each child resource is added as a
  dependency"; children of custom resources and of remote components are not added). The SDK expands this before
  the request is sent, so recorded dependencies rarely name a component; a component URN that does appear is
  expanded the same way here.

Weights: local component resources (custom=False) weigh 0. A remote component (pulumi-eks' `eks:index:Cluster`,
which the offline engine records as one node, its inner resources folded into it) is weighted by its type's entry
in the data file, i.e. as the EKS control plane. The Kubernetes provider is not a recorded dependency (it is the
`provider` option); it waits only for the cluster, which every Kubernetes resource here already depends on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DURATIONS_FILE = Path(__file__).resolve().parent.parent / "infra" / "data" / "create_durations.json"


class Resource(Protocol):
    urn: str
    type: str
    parent: str
    dependencies: Sequence[str]
    custom: bool


@dataclass(frozen=True)
class Durations:
    """Typical create seconds per type token: exact types, then the longest matching prefix, then a default."""

    types: Mapping[str, float]
    prefixes: Mapping[str, float]
    default: float

    @classmethod
    def load(cls, path: Path = DURATIONS_FILE) -> Durations:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            types={t: float(e["seconds"]) for t, e in data["types"].items()},
            prefixes={p: float(e["seconds"]) for p, e in data.get("prefixes", {}).items()},
            default=float(data["default_seconds"]),
        )

    def known(self, type_: str) -> bool:
        return type_ in self.types

    def seconds(self, type_: str) -> float:
        if type_ in self.types:
            return self.types[type_]
        matches = [p for p in self.prefixes if type_.startswith(p)]
        return self.prefixes[max(matches, key=len)] if matches else self.default


@dataclass(frozen=True)
class Step:
    urn: str
    type: str
    seconds: float
    start: float

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]

    def as_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "seconds": _number(self.seconds)}


@dataclass(frozen=True)
class CriticalPath:
    estimate_seconds: float
    path: tuple[Step, ...]
    """In dependency order: every resource on the chain, zero-weight ones (random ids, providers) included; local
    component resources, which nothing creates, are left out."""

    @property
    def weighted(self) -> tuple[Step, ...]:
        """The steps that take time: what the chain is, physically."""
        return tuple(s for s in self.path if s.seconds > 0)

    def as_json(self) -> dict[str, Any]:
        return {"estimate_seconds": _number(self.estimate_seconds), "path": [s.as_json() for s in self.path]}


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def is_local_component(resource: Resource, durations: Durations) -> bool:
    """Not a custom resource, and not a remote component the data file weighs (eks:index:Cluster)."""
    return not resource.custom and not durations.known(resource.type)


def weight(resource: Resource, durations: Durations) -> float:
    return 0.0 if is_local_component(resource, durations) else durations.seconds(resource.type)


def critical_path(resources: Iterable[Resource], durations: Durations | None = None) -> CriticalPath:
    """The longest chain of creates, by typical durations, through dependencies and parents."""
    durations = durations or Durations.load()
    resources = list(resources)
    by_urn = {r.urn: r for r in resources}
    order = {r.urn: i for i, r in enumerate(resources)}
    children: dict[str, list[str]] = {}
    for r in resources:
        children.setdefault(r.parent, []).append(r.urn)

    def expand(urn: str) -> list[str]:
        """What waiting for `urn` means: itself, or for a local component its custom/remote descendants."""
        found, frontier = [], [urn]
        while frontier:
            current = frontier.pop()
            resource = by_urn.get(current)
            if resource is None:  # outside the recorded graph (the stack itself)
                continue
            if is_local_component(resource, durations):
                frontier.extend(children.get(current, ()))
            else:
                found.append(current)
        return found

    def waits_for(resource: Resource) -> set[str]:
        preds = {u for d in resource.dependencies for u in expand(d)}
        if resource.parent in by_urn:
            preds.add(resource.parent)  # the parent's registration: its create if custom, else its own waits
        preds.discard(resource.urn)
        return preds

    preds = {r.urn: waits_for(r) for r in resources}
    finish: dict[str, float] = {}
    start: dict[str, float] = {}
    via: dict[str, str | None] = {}
    topological = _topological(preds, order)
    for urn in topological:
        # Ties go to the earlier registration, so the chain is the same on every run.
        before = sorted(preds[urn], key=lambda u: (-finish[u], order[u]))
        via[urn] = before[0] if before else None
        start[urn] = finish[before[0]] if before else 0.0
        finish[urn] = start[urn] + weight(by_urn[urn], durations)

    if not resources:
        return CriticalPath(0.0, ())
    position = {u: i for i, u in enumerate(topological)}
    # The end: the latest finish; among equals the one furthest downstream (a zero-weight step after it counts).
    last: str | None = max(finish, key=lambda u: (finish[u], position[u]))
    chain = []
    while last is not None:
        r = by_urn[last]
        if not is_local_component(r, durations):  # nothing creates a local component: not a step
            chain.append(Step(r.urn, r.type, weight(r, durations), start[last]))
        last = via[last]
    chain.reverse()
    return CriticalPath(max(finish.values()), tuple(chain))


def _topological(preds: Mapping[str, set[str]], order: Mapping[str, int]) -> list[str]:
    remaining = {u: set(p) for u, p in preds.items()}
    dependents: dict[str, list[str]] = {}
    for urn, before in remaining.items():
        for p in before:
            dependents.setdefault(p, []).append(urn)
    ready = sorted((u for u, p in remaining.items() if not p), key=order.__getitem__)
    result = []
    while ready:
        urn = ready.pop(0)
        result.append(urn)
        for d in dependents.get(urn, ()):
            remaining[d].discard(urn)
            if not remaining[d]:
                ready.append(d)
    if len(result) != len(remaining):
        cycle = sorted(u for u, p in remaining.items() if p)
        raise ValueError(f"dependency cycle among {cycle}")
    return result


def summary_lines(result: CriticalPath) -> list[str]:
    """The render summary's section: the total, then one line per step that takes time."""
    steps = result.weighted
    width = max((len(s.type) for s in steps), default=10)
    lines = [
        f"Critical path of a first `pulumi up` (estimate): {result.estimate_seconds / 60:.1f} min "
        f"({_number(result.estimate_seconds)} s; typical durations from infra/data/create_durations.json)"
    ]
    lines += [f"  {s.type:<{width}}  {s.name:<36} {_number(s.seconds):>4} s" for s in steps]
    return lines
