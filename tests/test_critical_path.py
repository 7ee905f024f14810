"""The deploy's critical path (tools/critical_path.py): the algorithm on hand-made graphs, and the dev stack's chain.

The dev stack's chain must be exactly what physics requires: the control plane, the add-on nodes need to become
Ready (no self-managed CNI: `bootstrap_self_managed_addons=False`), the system node group, an add-on that can only
become ACTIVE on nodes (coredns), the Karpenter controller, then its node class and node pool. The comparison is on
the steps that take time (seconds > 0): zero-weight steps (the teardown anchor, providers) may sit on the chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from infra.cluster import ADDONS_BEFORE_NODES
from tools.critical_path import DURATIONS_FILE, CriticalPath, Durations, critical_path

CLUSTER = "eks:index:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
# What the control plane takes as inputs and may wait for (all seconds-scale).
BEFORE_CLUSTER = {"aws:kms/key:Key", "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:cloudwatch/logGroup:LogGroup"}


@dataclass(frozen=True)
class R:
    urn: str
    type: str = "t:slow"
    parent: str = ""
    dependencies: tuple[str, ...] = ()
    custom: bool = True
    inputs: dict = field(default_factory=dict)


TOY = Durations(types={"t:slow": 100, "t:fast": 10, "t:remote": 50}, prefixes={"random:": 0}, default=1)


def urns(result: CriticalPath) -> list[str]:
    return [s.urn for s in result.path]


def test_parallel_branches_take_the_longest_one():
    graph = [
        R("a", "t:fast"),
        R("b", "t:slow"),
        R("c", "t:fast", dependencies=("a",)),
        R("d", "t:fast", dependencies=("b", "c")),
    ]
    result = critical_path(graph, TOY)
    assert urns(result) == ["b", "d"]
    assert result.estimate_seconds == 110  # a and c (20 s) run while b (100 s) is created


def test_a_dependency_on_a_component_waits_for_all_its_descendants():
    graph = [
        R("comp", "pkg:index:Comp", custom=False),
        R("inner", "pkg:index:Inner", parent="comp", custom=False),
        R("x", "t:fast", parent="comp"),
        R("y", "t:slow", parent="inner"),
        R("z", "t:fast", dependencies=("comp",)),
    ]
    result = critical_path(graph, TOY)
    assert urns(result) == ["y", "z"]  # components are no steps: nothing creates them
    assert result.estimate_seconds == 110


def test_a_child_waits_for_its_custom_parent_and_for_what_its_component_parent_waited_for():
    graph = [
        R("slow", "t:slow"),
        R("comp", "pkg:index:Comp", custom=False, dependencies=("slow",)),
        R("child", "t:fast", parent="comp"),
        R("grandchild", "t:fast", parent="child"),
    ]
    result = critical_path(graph, TOY)
    assert urns(result) == ["slow", "child", "grandchild"]
    assert result.estimate_seconds == 120


def test_a_remote_component_is_weighted_and_unknown_types_take_the_default():
    graph = [R("eks", "t:remote", custom=False), R("r", "random:index:Id", dependencies=("eks",)), R("u", "t:other")]
    result = critical_path(graph, TOY)
    assert [(s.urn, s.seconds) for s in result.path] == [("eks", 50), ("r", 0)]
    assert [s.urn for s in result.weighted] == ["eks"]
    assert critical_path([R("u", "t:other")], TOY).estimate_seconds == 1


def test_a_cycle_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="cycle"):
        critical_path([R("a", dependencies=("b",)), R("b", dependencies=("a",))], TOY)


def test_every_duration_says_where_it_comes_from():
    data = json.loads(DURATIONS_FILE.read_text())
    entries = {**data["types"], **data["prefixes"]}
    assert entries and data["default_source"]
    for type_, entry in entries.items():
        assert entry["seconds"] >= 0 and len(entry["source"]) > 10, type_
    durations = Durations.load()
    assert durations.seconds(CLUSTER) >= 8 * 60 and durations.seconds(NODE_GROUP) >= 120
    assert durations.seconds("pulumi:providers:kubernetes") == 0 and durations.seconds(NODE_POOL) > 0


@pytest.fixture
def path(stack) -> CriticalPath:
    return critical_path(stack.registrations)


def test_the_dev_stack_critical_path_is_the_chain_physics_requires(stack, path):
    types = [s.type for s in path.weighted]
    start = types.index(CLUSTER)
    before, chain = path.weighted[:start], path.weighted[start:]
    assert {s.type for s in before} <= BEFORE_CLUSTER, types
    assert sum(s.seconds for s in before) <= 30, types
    assert [s.type for s in chain] == [CLUSTER, ADDON, NODE_GROUP, ADDON, RELEASE, NODE_CLASS, NODE_POOL]
    _, cni, nodes, after_nodes, controller, _, _ = chain
    by_urn = {r.urn: r for r in stack.registrations}
    assert by_urn[cni.urn].inputs["addonName"] in ADDONS_BEFORE_NODES
    assert nodes.urn in by_urn[after_nodes.urn].dependencies  # an add-on that needs nodes (coredns)
    assert by_urn[controller.urn].inputs["chart"].endswith("/karpenter")  # the controller, not its CRDs


def test_the_estimate_stays_near_the_floor(path):
    durations = Durations.load()
    # The floor: nothing can run Karpenter before a control plane exists and nodes run it.
    floor = durations.seconds(CLUSTER) + durations.seconds(NODE_GROUP) + durations.seconds(RELEASE)
    # Above it only: the CNI add-on nodes need to be Ready and coredns, which needs nodes (two add-ons), and a
    # minute of seconds-scale steps (the KMS key or subnets before the cluster, the node class and pool after).
    assert floor <= path.estimate_seconds <= floor + 2 * durations.seconds(ADDON) + 60
    assert path.estimate_seconds == sum(s.seconds for s in path.path)


def test_nothing_slow_waits_for_the_control_plane_without_needing_it(stack):
    cluster = stack.one(CLUSTER)
    nat = stack.one("aws:ec2/natGateway:NatGateway")
    assert not stack.depends_on(cluster, nat)  # NAT gateway and control plane are created in parallel
    # Only the cluster's name is needed (known before the cluster): queue, rules, IAM roles and policies.
    name_only = [
        *stack.of_type("aws:sqs/queue:Queue"),
        *stack.of_type("aws:cloudwatch/eventRule:EventRule"),
        *stack.of_type("aws:iam/role:Role"),
        *stack.of_type("aws:iam/policy:Policy"),
        *stack.of_type("aws:kms/key:Key"),
    ]
    assert len(name_only) >= 1 + 5 + 4 + 6 + 1
    for resource in name_only:
        assert not stack.depends_on(resource, cluster), resource.name


def test_the_path_json_is_in_dependency_order(stack, path):
    document = path.as_json()
    assert set(document) == {"estimate_seconds", "path"}
    assert all(set(step) == {"urn", "type", "seconds"} for step in document["path"])
    by_urn = {r.urn: r for r in stack.registrations}
    for earlier, later in zip(document["path"], document["path"][1:], strict=False):
        assert (
            stack.depends_on(by_urn[later["urn"]], by_urn[earlier["urn"]])
            or by_urn[later["urn"]].parent == (earlier["urn"])
        ), later["urn"]
