"""Where the teardown cleanup hook sits: on a resource deleted only on teardown, between the controllers and the
cluster (Pulumi deletes dependents first), and on nothing in the network."""

from __future__ import annotations

from infra.destroy_hook import HOOK_NAME

RELEASE = "kubernetes:helm.sh/v3:Release"
KARPENTER_OBJECTS = ("kubernetes:karpenter.sh/v1:NodePool", "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass")


def hooked(run) -> list:
    return [r for r in run.registrations if r.before_delete_hooks]


def test_exactly_one_resource_carries_the_cleanup_and_it_is_not_in_the_network(stack):
    (anchor,) = hooked(stack)
    assert anchor.before_delete_hooks == (HOOK_NAME,)
    assert anchor.type == "random:index/randomId:RandomId"
    network = stack.one("eks-gpu-spot:index:Network")
    assert anchor.parent != network.urn
    assert not any(r.before_delete_hooks for r in stack.of_type("aws:ec2/subnet:Subnet"))


def test_the_anchor_inputs_are_only_the_cluster_name_and_region(stack):
    (anchor,) = hooked(stack)
    assert anchor.inputs["keepers"] == {"clusterName": stack.outputs["cluster_name"], "region": "us-west-2"}
    assert set(anchor.inputs) == {"keepers", "byteLength"}


def test_the_anchor_sits_between_the_controllers_and_the_cluster(stack):
    (anchor,) = hooked(stack)
    assert stack.depends_on(anchor, stack.one("eks:index:Cluster"))
    # The controllers' releases (Karpenter, its CRDs, the LB controller): what they leave behind in AWS is what the
    # cleanup removes. The dcgm-exporter release (observability) and the EFA device plugin (a DaemonSet, in the dev
    # stack since p5.48xlarge has EFA) create nothing in AWS and need no ordering here.
    releases = [r for r in stack.of_type(RELEASE) if not r.name.startswith(("observability-", "efa-"))]
    dependents = releases + [r for t in KARPENTER_OBJECTS for r in stack.of_type(t)]
    assert len(dependents) == 3 + 4
    for resource in dependents:
        assert anchor.urn in resource.dependencies, resource.name
    assert not any(stack.depends_on(anchor, r) for r in dependents)


def test_pools_and_classes_may_take_long_enough_to_drain_a_gpu_node(stack):
    for type_ in KARPENTER_OBJECTS:
        for resource in stack.of_type(type_):
            delete = resource.custom_timeouts["delete"]
            assert delete.endswith("m") and int(delete[:-1]) >= 30, resource.name  # pulumi-kubernetes' default: 10m
