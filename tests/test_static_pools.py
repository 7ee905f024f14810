"""Static pools on reserved capacity (README "Capacity Blocks"): `replicas` and `placementGroup`, their refusals,
the NodePool and node class Karpenter's v1.14.1 CRDs accept (schema, CEL, and the transition rule that makes a
toggle a replacement), and what render says about a reservation's end."""

from __future__ import annotations

import copy
import json
import re

import pytest

from infra.catalog.gpus import CATALOG
from infra.config import parse_config
from infra.gpu.placement import EFA_POOL_LABEL, Pod
from infra.gpu.scheduling import lands_on
from infra.gpu.static import PROVISIONING_ANNOTATION, network_interfaces
from infra.node_pools import nodepool_plan, stack_offers
from tests.conftest import PROJECT_ROOT, config_error, parse, render_here, render_stack, run_stack_file
from tests.karpenter_crds import validate, validate_update
from tools.render import kubernetes_objects, read_stack_file

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
BLOCK = {
    "name": "block",
    "instanceTypes": ["p5.48xlarge"],
    "capacityTypes": ["reserved"],
    "capacityReservationIds": ["cr-0123456789abcdef0"],
    "replicas": 2,
    "efa": True,
    "zone": "usw2-az2",
}
CAPACITY_BLOCK_STACK = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.capacity-block.yaml"


def pools(*items: dict) -> str:
    return json.dumps(list(items))


@pytest.fixture
def crds(reference):
    return reference / "karpenter" / "crds"


# --- keys and refusals ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "said"),
    [
        ({"capacityTypes": ["spot", "reserved"]}, "gpuPools[0].capacityTypes", "only reserved and on-demand"),
        ({"weight": 10}, "gpuPools[0].weight", "not supported with replicas"),
        ({"replicas": -1}, "gpuPools[0].replicas", "between 0 and 1000"),
        ({"replicas": "two"}, "gpuPools[0].replicas", "two"),
        ({"placementGroup": "spread"}, "gpuPools[0].placementGroup", "allowed: cluster"),
        ({"efa": False, "zone": None, "placementGroup": "cluster"}, "gpuPools[0].placementGroup", "needs efa"),
        ({"instanceTypes": ["p5.48xlarge", "p5en.48xlarge"]}, "gpuPools[0].instanceTypes", "p5en.48xlarge 16"),
    ],
    ids=["spot", "weight", "negative", "not-a-number", "spread", "group-without-efa", "two-efa-layouts"],
)
def test_each_refusal_names_the_key(change, key, said):
    pool = {k: v for k, v in {**BLOCK, **change}.items() if v is not None}
    error = str(config_error(gpuPools=pools(pool)))
    assert key in error and said in error, error


def test_a_static_pool_without_efa_may_mix_types_and_use_on_demand():
    pool = {**BLOCK, "efa": False, "zone": None, "capacityTypes": ["on-demand"], "capacityReservationIds": None}
    (parsed,) = parse(gpuPools=pools({k: v for k, v in pool.items() if v is not None})).gpu_pools
    assert parsed.replicas == 2 and parsed.most_gpus == 16


# --- what Karpenter receives ----------------------------------------------------------------------------------------


def test_the_static_nodepool_holds_replicas_and_limits_only_nodes(crds):
    run = render_stack(gpuPools=pools(BLOCK))
    objects = {(o["kind"], o["metadata"]["name"]): o for o in kubernetes_objects(run)}
    pool = objects[("NodePool", "block")]
    assert pool["spec"]["replicas"] == 2
    assert pool["spec"]["limits"] == {"nodes": 2}
    assert "weight" not in pool["spec"]
    # Busy nodes never drift away (README: how a static pool gets a new AMI).
    assert {"nodes": "0", "reasons": ["Underutilized", "Drifted"]} in pool["spec"]["disruption"]["budgets"]
    assert pool["metadata"]["annotations"] == {PROVISIONING_ANNOTATION: "static"}
    for obj in objects.values():  # the static class (33 interfaces, slow CEL) is checked in the next test
        if obj["kind"] == "NodePool":
            assert validate(crds, obj) == [], obj["metadata"]["name"]
    karpenter = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter")
    assert karpenter.inputs["values"]["settings"]["featureGates"]["staticCapacity"] is True
    assert render_stack().of_type(NODE_POOL)  # and off without static pools:
    plain = [r for r in render_stack().of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter"]
    assert plain[0].inputs["values"]["settings"]["featureGates"]["staticCapacity"] is False


def test_a_static_efa_class_lists_one_efa_interface_per_card_as_karpenter_counts_them(crds):
    run = render_stack(gpuPools=pools(BLOCK))
    (node_class,) = [o for o in kubernetes_objects(run) if o["metadata"]["name"] == "gpu-block"]
    interfaces = node_class["spec"]["networkInterfaces"]
    assert interfaces[0] == {"networkCardIndex": 0, "deviceIndex": 0, "interfaceType": "interface"}
    efa_only = [i for i in interfaces if i["interfaceType"] == "efa-only"]
    # Karpenter's capacity with networkInterfaces is the count of efa-only entries (instancetype/types.go efas()).
    assert len(efa_only) == CATALOG["p5.48xlarge"].efa == 32
    assert sorted(i["networkCardIndex"] for i in efa_only) == list(range(32))
    assert validate(crds, node_class) == []
    # The CRD's own rule catches a second EFA device on one card: the validator can fail.
    broken = copy.deepcopy(node_class)  # (a short list: the rule is quadratic in interfaces)
    second = {"networkCardIndex": 1, "deviceIndex": 2, "interfaceType": "efa-only"}
    broken["spec"]["networkInterfaces"] = [*interfaces[:3], second]
    assert any("at most one efa device per network card" in v.message for v in validate(crds, broken))


def test_dynamic_pools_get_no_interfaces():
    (pool,) = parse(gpuPools=pools({**BLOCK, "replicas": None, "capacityTypes": ["on-demand"],
                                     "capacityReservationIds": []})).gpu_pools  # fmt: skip
    assert network_interfaces(pool) == []


def test_the_placement_group_is_created_and_selected_by_name():
    pool = {**BLOCK, "capacityTypes": ["on-demand"], "capacityReservationIds": [], "placementGroup": "cluster"}
    run = render_stack(gpuPools=pools(pool))
    (group,) = run.of_type("aws:ec2/placementGroup:PlacementGroup")
    assert group.inputs["strategy"] == "cluster"
    assert group.inputs["name"] == f"{run.outputs['cluster_name']}-block"
    (node_class,) = [
        r for r in run.of_type("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass") if r.name.endswith("gpu-block-class")
    ]
    assert node_class.inputs["spec"]["placementGroupSelector"] == {"name": group.inputs["name"]}
    assert run.depends_on(node_class, group)
    # Deleted after the teardown cleanup has terminated every instance (EC2 refuses a group still in use).
    assert run.depends_on(run.one("random:index/randomId:RandomId", "teardown-cleanup"), group)
    assert not render_stack(gpuPools=pools(BLOCK)).of_type("aws:ec2/placementGroup:PlacementGroup")


# --- toggling static: a replacement, never an update the API server refuses -----------------------------------------


def value_at(document: dict, path: str):
    """The value at a Pulumi property path like `metadata.annotations["key"]` (None when absent)."""
    for part in re.findall(r'([^.\[\]"]+)|\["([^"]+)"\]', path):
        key = part[0] or part[1]
        document = document.get(key) if isinstance(document, dict) else None
    return document


def replaces(registration, old_inputs: dict, new_inputs: dict) -> bool:
    """Pulumi's rule for replaceOnChanges: a change at or under a listed property path replaces the resource
    (step_generator.go applyReplaceOnChanges). Whether the provider reports the new annotation as a change of the
    map or of its key, the map's value differs, and both lie under `metadata.annotations`."""
    return any(value_at(old_inputs, p) != value_at(new_inputs, p) for p in registration.replace_on_changes)


def nodepool(cfg_pools: list[dict]) -> dict:
    run = render_stack(gpuPools=pools(*cfg_pools))
    (found,) = [r for r in run.of_type(NODE_POOL) if r.inputs["metadata"]["name"] == "block"]
    return found


def test_turning_a_pool_static_replaces_it_and_a_new_count_updates_it(crds):
    dynamic = {**BLOCK, "replicas": None, "capacityTypes": ["on-demand"], "capacityReservationIds": []}
    dynamic = {k: v for k, v in dynamic.items() if v is not None}
    static_2 = {**dynamic, "replicas": 2}
    static_3 = {**dynamic, "replicas": 3}
    before, after, bigger = nodepool([dynamic]), nodepool([static_2]), nodepool([static_3])

    # The API server refuses the in-place update (the CRD's transition rule) ...
    refused = validate_update(crds, before.inputs, after.inputs)
    assert [v.message for v in refused] == [
        "Cannot transition NodePool between static (replicas set) and dynamic (replicas unset) provisioning modes"
    ]
    assert validate_update(crds, after.inputs, before.inputs)  # ... both ways
    # ... so Pulumi replaces it, deleting the old object first (one Kubernetes name).
    assert replaces(after, before.inputs, after.inputs) and replaces(before, after.inputs, before.inputs)
    assert after.delete_before_replace and before.delete_before_replace
    assert after.replace_on_changes == ("metadata.annotations",)
    # A new replica count is an ordinary update, which the API server accepts.
    assert not replaces(bigger, after.inputs, bigger.inputs)
    assert validate_update(crds, after.inputs, bigger.inputs) == []


# --- placement and render ---------------------------------------------------------------------------------------------


def test_karpenter_never_launches_a_static_pool_for_a_pod():
    offers = stack_offers(parse(gpuPools=pools(BLOCK)))
    pod = Pod(
        requests={"nvidia.com/gpu": 8},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        node_selector={EFA_POOL_LABEL: "true"},
    )
    assert lands_on(pod, offers) is None
    assert "block" in nodepool_plan(parse(gpuPools=pools(BLOCK)))


def test_render_says_what_happens_when_the_reservation_ends(tmp_path):
    result = render_here("--config-file", str(CAPACITY_BLOCK_STACK), "--out", str(tmp_path / "cb"))
    assert result.returncode == 0, result.stderr
    assert "block-h100: static on its reservation; after the reservation ends every launch fails" in result.stdout
    assert "static  reserved in use1-az4" in result.stdout

    both = {**BLOCK, "capacityTypes": ["reserved", "on-demand"]}
    stack = tmp_path / "Pulumi.both.yaml"
    stack.write_text(json.dumps({"config": {"aws:region": "us-west-2", "eks-gpu-spot:gpuPools": [both]}}))
    result = render_here("--config-file", str(stack), "--out", str(tmp_path / "both"))
    assert "warning: static pool block has reserved and on-demand" in result.stdout
    assert "relaunches all 2 nodes On-Demand" in result.stdout


def test_the_capacity_block_example_passes_the_crds(crds):
    run = run_stack_file(CAPACITY_BLOCK_STACK, "capacity-block")
    for obj in kubernetes_objects(run):
        if obj["kind"] == "EC2NodeClass" and "networkInterfaces" in obj["spec"]:
            # The layout validated above (its CEL rule is quadratic in interfaces: one evaluation is enough).
            (pool,) = [p for p in parse_config(read_stack_file(CAPACITY_BLOCK_STACK)).gpu_pools if p.replicas]
            assert obj["spec"]["networkInterfaces"] == network_interfaces(pool)
        elif obj["kind"] in ("NodePool", "EC2NodeClass"):
            assert validate(crds, obj) == [], obj["metadata"]["name"]
