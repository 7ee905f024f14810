"""Every rendered NodePool and EC2NodeClass passes Karpenter v1.14.1's CRDs: OpenAPI schema and CEL rules.

The validator (tests/karpenter_crds.py) must also be able to fail: mutated objects are rejected with the rule's
own message.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from celpy.evaluation import base_functions

from infra.config import StackConfig
from infra.node_pools import (
    NODECLASS_API_VERSION,
    NODEPOOL_API_VERSION,
    manifest,
    node_class_plan,
    nodeclass_spec,
    nodepool_plan,
)
from tests.karpenter_crds import (
    CRD_FILES,
    KUBERNETES_CEL_FUNCTIONS,
    apply_defaults,
    cel_rules,
    is_transition_rule,
    load_schema,
    validate,
)
from tools.render import kubernetes_objects

KARPENTER_KINDS = {kind for _, kind in CRD_FILES}
# CEL macros: expanded by the parser, not looked up as functions.
CEL_MACROS = {"all", "exists", "exists_one", "filter", "map", "has"}
SEVERAL_GPU_TYPES = {"gpuInstanceTypes": "p5.48xlarge,p4d.24xlarge,g6e.12xlarge", "gpuCapacityTypes": "spot,on-demand"}


@pytest.fixture
def crds(reference):
    return reference / "karpenter" / "crds"


def karpenter_objects(run) -> list[dict]:
    return [obj for obj in kubernetes_objects(run) if obj["kind"] in KARPENTER_KINDS]


@pytest.mark.parametrize("config", [{}, SEVERAL_GPU_TYPES], ids=["default", "several-gpu-types"])
def test_rendered_objects_pass_the_crds(render, crds, config):
    objects = karpenter_objects(render(**config))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("EC2NodeClass", "default"),
        ("EC2NodeClass", "gpu"),
        ("NodePool", "default"),
        ("NodePool", "gpu-spot"),
    ]
    for obj in objects:
        assert validate(crds, obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_image_cache_snapshot_passes_the_crd(render, crds):
    run = render(gpuImageCacheSnapshotId="snap-0123456789abcdef0")
    (gpu,) = [o for o in karpenter_objects(run) if o["kind"] == "EC2NodeClass" and o["metadata"]["name"] == "gpu"]
    assert validate(crds, gpu) == []


# --- the validator itself --------------------------------------------------------------------------------------


def built_objects() -> dict[str, dict]:
    """Objects from the pure spec builders (no engine), keyed kind/name, for mutation."""
    cfg = StackConfig()
    objects = {
        f"EC2NodeClass/{name}": manifest(
            NODECLASS_API_VERSION,
            "EC2NodeClass",
            name,
            nodeclass_spec(name, cfg, cluster_name="demo-abcd1234", role_name="demo-node", stack="test", pool=pool),
        )
        for name, pool in node_class_plan(cfg).items()
    }
    pools = {name: spec for name, (spec, _) in nodepool_plan(cfg).items()}
    objects.update(
        {f"NodePool/{name}": manifest(NODEPOOL_API_VERSION, "NodePool", name, spec) for name, spec in pools.items()}
    )
    assert sorted(objects) == ["EC2NodeClass/default", "EC2NodeClass/gpu", "NodePool/default", "NodePool/gpu-spot"]
    return copy.deepcopy(objects)


def messages(crds, obj) -> list[str]:
    return [v.message for v in validate(crds, obj)]


def test_built_objects_pass_before_mutation(crds):
    for key, obj in built_objects().items():
        assert validate(crds, obj) == [], key


def test_rejects_in_requirement_without_values(crds):
    pool = built_objects()["NodePool/gpu-spot"]
    pool["spec"]["template"]["spec"]["requirements"][0]["values"] = []
    assert messages(crds, pool) == ["requirements with operator 'In' must have a value defined"]


def test_rejects_hostname_requirement(crds):
    pool = built_objects()["NodePool/default"]
    requirement = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["ip-10-0-0-1"]}
    pool["spec"]["template"]["spec"]["requirements"].append(requirement)
    assert messages(crds, pool) == ['label "kubernetes.io/hostname" is restricted']


def test_rejects_unlisted_karpenter_domain_keys_and_non_integer_bounds(crds):
    pool = built_objects()["NodePool/default"]
    requirements = pool["spec"]["template"]["spec"]["requirements"]
    requirements.append({"key": "karpenter.k8s.aws/instance-pods", "operator": "Exists"})
    requirements.append({"key": "karpenter.sh/nodepool", "operator": "In", "values": ["gpu-spot"]})
    requirements[1]["values"] = ["3", "4"]  # instance-cpu Gt takes exactly one integer
    found = messages(crds, pool)
    assert 'label domain "karpenter.k8s.aws" is restricted' in found
    assert 'label "karpenter.sh/nodepool" is restricted' in found
    assert "requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must have a single positive integer value" in found


def test_rejects_role_together_with_instance_profile(crds):
    node_class = built_objects()["EC2NodeClass/gpu"]
    node_class["spec"]["instanceProfile"] = "demo-profile"
    assert messages(crds, node_class) == ["must specify exactly one of ['role', 'instanceProfile']"]


def test_rejects_alias_with_a_second_ami_selector_term(crds):
    node_class = built_objects()["EC2NodeClass/default"]
    node_class["spec"]["amiSelectorTerms"].append({"id": "ami-0123456789abcdef0"})
    assert messages(crds, node_class) == [
        "'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms"
    ]


def test_rejects_reserved_tags_and_initialization_rate_without_snapshot(crds):
    node_class = built_objects()["EC2NodeClass/gpu"]
    node_class["spec"]["tags"]["kubernetes.io/cluster/demo"] = "owned"
    node_class["spec"]["blockDeviceMappings"][1]["ebs"]["volumeInitializationRate"] = 300
    assert sorted(messages(crds, node_class)) == [
        "snapshotID must be set when volumeInitializationRate is set",
        "tag contains a restricted tag matching kubernetes.io/cluster/",
    ]


def test_rejects_unknown_fields_and_schema_violations(crds):
    pool = built_objects()["NodePool/gpu-spot"]
    pool["spec"]["expireAfter"] = "Never"  # v1beta1's location; v1 has it under template.spec
    pool["spec"]["disruption"]["budgets"][0]["nodes"] = 0  # must be a string
    found = messages(crds, pool)
    assert any("'expireAfter' was unexpected" in m for m in found)
    assert any("is not of type 'string'" in m for m in found)
    del pool["spec"]["disruption"]["consolidateAfter"]
    del pool["spec"]["expireAfter"]
    pool["spec"]["disruption"]["budgets"][0]["nodes"] = "0"
    assert messages(crds, pool) == ["'consolidateAfter' is a required property"]


def test_defaults_are_applied_before_cel(crds):
    schema = load_schema(crds, NODEPOOL_API_VERSION, "NodePool")
    pool = built_objects()["NodePool/default"]
    del pool["spec"]["disruption"]
    defaulted = apply_defaults(schema, pool)
    # The disruption default, then the budgets default inside it, as the API server does.
    assert defaulted["spec"]["disruption"] == {
        "consolidateAfter": "0s",
        "consolidationPolicy": "WhenEmptyOrUnderutilized",
        "budgets": [{"nodes": "10%"}],
    }
    node_class = built_objects()["EC2NodeClass/default"]
    del node_class["spec"]["metadataOptions"]
    schema = load_schema(crds, NODECLASS_API_VERSION, "EC2NodeClass")
    assert apply_defaults(schema, node_class)["spec"]["metadataOptions"]["httpTokens"] == "required"


def test_every_function_the_rules_call_is_available(crds):
    available = set(base_functions) | set(KUBERNETES_CEL_FUNCTIONS) | CEL_MACROS
    evaluated = 0
    for api_version, kind in CRD_FILES:
        for rule in cel_rules(load_schema(crds, api_version, kind)):
            if is_transition_rule(rule):
                continue
            called = set(re.findall(r"([A-Za-z_]\w*)\s*\(", rule["rule"]))
            assert called <= available, f"{kind}: {rule['rule']} calls {called - available}"
            evaluated += 1
    assert evaluated > 50  # the CRDs hold dozens of rules; a broken walk would find few


@pytest.mark.parametrize("stack_file", ["Pulumi.dev.yaml", "examples/stacks/Pulumi.gpu-pools.yaml"])
def test_committed_stacks_pass_the_crds(crds, stack_file):
    """The stacks users copy from: every NodePool, EC2NodeClass and NodeOverlay they render is accepted (the
    capacity-block example is checked in tests/test_static_pools.py)."""
    from tests.conftest import PROJECT_ROOT, run_stack_file

    objects = karpenter_objects(run_stack_file(PROJECT_ROOT / stack_file, Path(stack_file).stem.split(".")[-1]))
    assert objects
    for obj in objects:
        assert validate(crds, obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"
