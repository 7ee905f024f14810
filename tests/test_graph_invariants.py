"""Dependency invariants of the recorded graph, so `pulumi destroy` deletes in a safe order:
pools -> classes -> controllers -> nodes -> network (Pulumi deletes dependents before their dependencies)."""

from __future__ import annotations

import pytest

RELEASE = "kubernetes:helm.sh/v3:Release"
POD_IDENTITY = "aws:eks/podIdentityAssociation:PodIdentityAssociation"


def component(run, type_):
    return run.one(type_)


def descendants(run, root) -> list:
    found, frontier = [], [root.urn]
    while frontier:
        children = [r for r in run.registrations if r.parent in frontier]
        found += children
        frontier = [c.urn for c in children]
    return found


def release(run, chart_suffix):
    matches = [r for r in run.of_type(RELEASE) if str(r.inputs.get("chart", "")).endswith(chart_suffix)]
    assert len(matches) == 1, [r.inputs.get("chart") for r in run.of_type(RELEASE)]
    return matches[0]


@pytest.fixture
def graph(render):
    # Several GPU types and both capacity types: the richest graph.
    return render(gpuInstanceTypes="p5.48xlarge,p4d.24xlarge,g6e.12xlarge", gpuCapacityTypes="spot,on-demand")


def test_every_node_pool_and_node_class_depends_on_both_karpenter_releases(graph):
    objects = graph.of_type("kubernetes:karpenter.sh/v1:NodePool") + graph.of_type(
        "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
    )
    assert len(objects) == 4
    controller, crds = release(graph, "karpenter"), release(graph, "karpenter-crd")
    for obj in objects:
        assert controller.urn in obj.dependencies and crds.urn in obj.dependencies, obj.name


def test_controllers_wait_for_system_nodes_pod_identity_and_the_agent(graph):
    node_group = graph.one("aws:eks/nodeGroup:NodeGroup")
    agent = next(r for r in graph.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "eks-pod-identity-agent")
    associations = {r.inputs["serviceAccount"]: r for r in graph.of_type(POD_IDENTITY)}
    for chart, service_account in (
        ("karpenter", "karpenter"),
        ("aws-load-balancer-controller", "aws-load-balancer-controller"),
    ):
        controller = release(graph, chart)
        assert graph.depends_on(controller, node_group), chart
        assert graph.depends_on(controller, agent), chart
        assert graph.depends_on(controller, associations[service_account]), chart


def test_both_controllers_wait_for_coredns(graph):
    coredns = next(r for r in graph.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "coredns")
    for chart in ("karpenter", "aws-load-balancer-controller"):
        assert graph.depends_on(release(graph, chart), coredns), chart


def test_system_node_group_depends_on_the_nat_route(graph):
    route = graph.one("aws:ec2/route:Route", "network-private-nat")
    assert graph.depends_on(graph.one("aws:eks/nodeGroup:NodeGroup"), route)


def test_karpenter_and_the_lb_controller_are_independent(graph):
    karpenter = descendants(graph, component(graph, "eks-gpu-spot:index:Karpenter"))
    lbc = descendants(graph, component(graph, "eks-gpu-spot:index:LoadBalancerController"))
    assert karpenter and lbc
    for a, b in ((karpenter, lbc), (lbc, karpenter)):
        for dependent in a:
            assert not any(graph.depends_on(dependent, other) for other in b), dependent.name


def test_the_network_does_not_depend_on_the_cluster(graph):
    network = descendants(graph, component(graph, "eks-gpu-spot:index:Network"))
    cluster = [
        component(graph, "eks-gpu-spot:index:Cluster"),
        *descendants(graph, component(graph, "eks-gpu-spot:index:Cluster")),
    ]
    assert len(network) > 30
    for resource in network:
        assert not any(graph.depends_on(resource, c) for c in cluster), resource.name


def test_no_dependency_points_outside_the_recorded_graph(graph):
    urns = {r.urn for r in graph.registrations}
    for r in graph.registrations:
        assert set(r.dependencies) <= urns, r.name
