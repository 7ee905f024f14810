"""GPU pools from `gpuPools`: selection by GPU attributes, capacity types, sharing, reservations, and the seed's
single pool when the key is not set. Rendered objects are checked against Karpenter's CRDs and the catalog."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.catalog.gpus import CATALOG, GPU_NAMES, matching_types
from infra.config import ConfigError, parse_config
from infra.gpu.pools import gpu_pool_spec, node_class_of, node_overlays
from infra.node_pools import manifest, nodeclass_spec
from tests.conftest import PROJECT_ROOT, render_here, run_stack_file
from tests.karpenter_crds import validate
from tools.render import kubernetes_objects, read_stack_file

THREE_POOLS = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"
NODEPOOL = "kubernetes:karpenter.sh/v1:NodePool"
NODECLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
OVERLAY = "kubernetes:karpenter.sh/v1alpha1:NodeOverlay"
# GPU memory as each GPU is sold (marketing GB), independent of Karpenter's reported MiB and of the program's
# conversion: a100 comes in two sizes, told apart by what it reports.
SOLD_GB = {
    "t4": 16, "t4g": 16, "l4": 24, "a10g": 24, "v100": 32, "rtx-pro-4500": 32, "l40s": 48, "h100": 80,
    "rtx-pro-server-6000": 96, "h200": 141, "b200": 180, "b300": 288,
}  # fmt: skip


def sold_gb(gpu_type) -> int:
    if gpu_type.gpu_name == "a100":
        return 40 if gpu_type.gpu_memory_mib < 50_000 else 80
    return SOLD_GB[gpu_type.gpu_name]


@pytest.fixture(scope="module")
def three_pools():
    return parse_config(read_stack_file(THREE_POOLS)), run_stack_file(THREE_POOLS, "gpu-pools")


def objects(run, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in kubernetes_objects(run) if o["kind"] == kind}


def pools(**config: str):
    return parse_config({"gpuPools": json.dumps(config.pop("gpuPools")), **config})


# --- the seed's interface ----------------------------------------------------------------------------------------


def test_without_gpu_pools_the_plan_is_the_seeds_single_pool(stack):
    assert sorted(objects(stack, "NodePool")) == ["default", "gpu-spot"]
    assert sorted(objects(stack, "EC2NodeClass")) == ["default", "gpu"]
    assert objects(stack, "NodeOverlay") == {}
    spec = objects(stack, "NodePool")["gpu-spot"]["spec"]
    assert spec["template"]["spec"]["requirements"] == [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]},
        {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    assert spec["template"]["spec"]["nodeClassRef"]["name"] == "gpu"
    assert "weight" not in spec


def test_gpu_pools_together_with_the_single_pool_keys_is_an_error_naming_both():
    with pytest.raises(ConfigError) as error:
        pools(gpuPools=[{"name": "a", "gpuNames": ["h100"]}], gpuCapacityTypes="spot,on-demand")
    assert error.value.keys == ("gpuPools",)
    assert "gpuCapacityTypes" in str(error.value)


# --- three pools: render, CRDs, matched types ---------------------------------------------------------------------


def test_three_pools_render_with_their_own_classes_and_overlays(three_pools):
    _, run = three_pools
    assert sorted(objects(run, "NodePool")) == ["default", "inference", "mig-h100", "reserved-h100", "training"]
    assert sorted(objects(run, "EC2NodeClass")) == [
        "default", "gpu", "gpu-inference", "gpu-mig-h100", "gpu-reserved-h100"
    ]  # fmt: skip
    classes = {n: p["spec"]["template"]["spec"]["nodeClassRef"]["name"] for n, p in objects(run, "NodePool").items()}
    assert classes["training"] == "gpu"  # nothing of its own: shares the class
    # One per GPU count the pool admits (gpuCountMax 4), not only the counts of today's types (1 and 4).
    assert sorted(objects(run, "NodeOverlay")) == [f"inference-{n}gpu-slices" for n in (1, 2, 3, 4)]


def test_every_rendered_karpenter_object_passes_the_crds(three_pools, reference):
    _, run = three_pools
    karpenter = [o for o in kubernetes_objects(run) if o["kind"] in ("NodePool", "EC2NodeClass", "NodeOverlay")]
    assert len(karpenter) == 5 + 5 + 4
    for obj in karpenter:
        assert validate(reference / "karpenter" / "crds", obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def expected_types(pool: dict) -> set[str]:
    """What a pool's config means, read straight off the catalog (not through Karpenter requirements)."""
    if "instanceTypes" in pool:
        return set(pool["instanceTypes"])
    return {
        name
        for name, t in CATALOG.items()
        if t.arch == "amd64"
        and t.gpu_count >= max(pool.get("gpuCountMin", 1), 1)
        and t.gpu_count <= pool.get("gpuCountMax", 99)
        and t.gpu_name in pool.get("gpuNames", [t.gpu_name])
        and t.family in pool.get("families", [t.family])
        and sold_gb(t) >= pool.get("gpuMemoryMinGiB", 0)
    }


def test_each_pools_rendered_requirements_match_what_its_config_means(three_pools):
    _, run = three_pools
    configured = {p["name"]: p for p in json.loads(read_stack_file(THREE_POOLS)["eks-gpu-spot:gpuPools"])}
    for name, pool in objects(run, "NodePool").items():
        if name == "default":
            continue
        rendered = matching_types(pool["spec"]["template"]["spec"]["requirements"])
        assert set(rendered) == expected_types(configured[name]), name
        assert rendered  # a pool that matches nothing never launches


@pytest.mark.parametrize("memory", [16, 24, 32, 40, 48, 80, 96, 141, 180, 288])
def test_gpu_memory_as_sold_selects_every_gpu_sold_with_at_least_that_much(memory):
    pool = {"name": "m", "gpuMemoryMinGiB": memory}
    cfg = pools(gpuPools=[pool])
    assert set(cfg.gpu_pools[0].matched_types) == expected_types(pool)


def test_24_gib_selects_l4_and_a10g_but_not_t4():
    names = {
        CATALOG[t].gpu_name for t in pools(gpuPools=[{"name": "m", "gpuMemoryMinGiB": 24}]).gpu_pools[0].matched_types
    }
    assert {"l4", "a10g"} <= names and "t4" not in names


def test_attribute_selection_is_requirements_on_karpenter_labels_not_a_type_list(three_pools):
    _, run = three_pools
    requirements = objects(run, "NodePool")["inference"]["spec"]["template"]["spec"]["requirements"]
    keys = {r["key"] for r in requirements}
    assert "node.kubernetes.io/instance-type" not in keys
    assert {"karpenter.k8s.aws/instance-gpu-name", "karpenter.k8s.aws/instance-gpu-count"} <= keys
    capacity = next(r for r in requirements if r["key"] == "karpenter.sh/capacity-type")
    assert capacity["values"] == ["spot", "on-demand"]


# --- protections, sharing, reservations ---------------------------------------------------------------------------


def test_every_gpu_pool_keeps_the_seeds_protections(three_pools):
    cfg, run = three_pools
    for name, pool in objects(run, "NodePool").items():
        if name == "default":
            continue
        spec = pool["spec"]
        # The GPU taint first; shared pools add their own (tests/test_placement.py).
        assert spec["template"]["spec"]["taints"][0] == {
            "key": "nvidia.com/gpu",
            "value": "true",
            "effect": "NoSchedule",
        }
        assert spec["template"]["spec"]["expireAfter"] == "Never"
        assert spec["disruption"]["consolidationPolicy"] == "WhenEmpty"
        assert {"nodes": "0", "reasons": ["Underutilized", "Drifted"]} in spec["disruption"]["budgets"]
    assert objects(run, "NodePool")["training"]["spec"]["disruption"]["consolidateAfter"] == "30m"
    assert objects(run, "NodePool")["inference"]["spec"]["disruption"]["consolidateAfter"] == cfg.gpu_consolidate_after
    # Time-sliced: the slices its gpuLimit of 32 GPUs holds, counted alike before and after nodes initialize.
    assert objects(run, "NodePool")["inference"]["spec"]["limits"] == {"nvidia.com/gpu.shared": 32 * 4}
    assert objects(run, "NodePool")["training"]["spec"]["limits"] == {"nvidia.com/gpu": 16}
    assert objects(run, "NodePool")["reserved-h100"]["spec"]["weight"] == 100


def test_time_slicing_is_in_the_pools_own_user_data_and_overlays_count_the_slices(three_pools):
    _, run = three_pools
    classes = objects(run, "EC2NodeClass")
    nvidia = tomllib.loads(classes["gpu-inference"]["spec"]["userData"])["settings"]["kubelet-device-plugins"]["nvidia"]
    assert nvidia == {
        "device-sharing-strategy": "time-slicing",
        "time-slicing": {"replicas": 4, "rename-by-default": True, "fail-requests-greater-than-one": True},
    }
    assert "kubelet-device-plugins" not in tomllib.loads(classes["gpu"]["spec"]["userData"])["settings"]
    overlays = objects(run, "NodeOverlay")
    assert overlays["inference-4gpu-slices"]["spec"] == {
        "requirements": [
            {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["inference"]},
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "In", "values": ["4"]},
            {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
        ],
        "capacity": {"nvidia.com/gpu.shared": "16"},
    }
    karpenter = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter")
    assert karpenter.inputs["values"]["settings"]["featureGates"] == {
        "nodeRepair": True,
        "nodeOverlay": True,
        "staticCapacity": False,
        "capacityBuffer": True,  # the example's training pool keeps headroom
    }


def test_a_reserved_pool_selects_its_reservations_in_its_own_class(three_pools):
    _, run = three_pools
    reserved = objects(run, "EC2NodeClass")["gpu-reserved-h100"]["spec"]
    assert reserved["capacityReservationSelectorTerms"] == [{"id": "cr-0123456789abcdef0"}]
    assert "capacityReservationSelectorTerms" not in objects(run, "EC2NodeClass")["gpu"]["spec"]


def test_reservations_by_tag_and_mig_profiles(reference):
    cfg = pools(
        gpuPools=[
            {
                "name": "odcr",
                "gpuNames": ["h100"],
                "capacityTypes": ["reserved"],
                "capacityReservationTags": {"team": "ml"},
                "migProfile": {"h100.80gb": "1g.10gb"},
            }
        ]
    )
    (pool,) = cfg.gpu_pools
    spec = nodeclass_spec(
        node_class_of(pool), cfg, cluster_name="c-abcd1234", role_name="node", stack="test", pool=pool
    )
    assert spec["capacityReservationSelectorTerms"] == [{"tags": {"team": "ml"}}]
    nvidia = tomllib.loads(spec["userData"])["settings"]["kubelet-device-plugins"]["nvidia"]
    assert nvidia == {"device-partitioning-strategy": "mig", "mig": {"profile": {"h100.80gb": "1g.10gb"}}}
    crds = reference / "karpenter" / "crds"
    assert validate(crds, manifest("karpenter.k8s.aws/v1", "EC2NodeClass", node_class_of(pool), spec)) == []


# --- bad pools ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool_list", "key", "words"),
    [
        ([{"name": "a", "gpuNames": ["h100"]}, {"name": "a", "gpuNames": ["l4"]}], "gpuPools[1].name", ["gpuPools[0]"]),
        ([{"name": "default", "gpuNames": ["h100"]}], "gpuPools[0].name", ["not 'default'"]),
        ([{"name": "a", "gpuNames": ["h100", "x100"]}], "gpuPools[0].gpuNames[1]", ["x100", "l40s"]),
        ([{"name": "a", "gpuNames": ["t4"], "gpuMemoryMinGiB": 24}], "gpuPools[0].gpuNames", ["select no NVIDIA type"]),
        ([{"name": "a", "instanceTypes": ["m5.large"]}], "gpuPools[0].instanceTypes[0]", ["not an NVIDIA GPU"]),
        (
            [{"name": "a", "instanceTypes": ["p5.48xlarge"], "gpuNames": ["h100"]}],
            "gpuPools[0].instanceTypes",
            ["gpuNames"],
        ),
        ([{"name": "a"}], "gpuPools[0].instanceTypes", ["needs instanceTypes or GPU attributes"]),
        ([{"name": "a", "gpuNames": ["h100"], "capacityTypes": ["reserved"]}], "gpuPools[0].capacityTypes", ["reserv"]),
        (
            [{"name": "a", "gpuNames": ["h100"], "capacityTypes": ["spot", "cheap"]}],
            "gpuPools[0].capacityTypes[1]",
            ["reserved"],
        ),
        (
            [{"name": "a", "gpuNames": ["h100"], "timeSlicingReplicas": 1}],
            "gpuPools[0].timeSlicingReplicas",
            ["2 and 64"],
        ),
        ([{"name": "a", "gpuNames": ["h100"], "weight": 101}], "gpuPools[0].weight", ["1 and 100"]),
        ([{"name": "a", "gpuNames": ["h100"], "gpuLimt": 4}], "gpuPools[0].gpuLimt", ["unknown key", "gpuLimit"]),
        (
            [{"name": "a", "gpuNames": ["l4"], "migProfile": {"h100.80gb": "2"}}],
            "gpuPools[0].migProfile.h100.80gb",
            ["l4"],
        ),
    ],
)
def test_a_bad_pool_is_one_error_naming_the_pool_key(pool_list, key, words):
    with pytest.raises(ConfigError) as error:
        pools(gpuPools=pool_list)
    assert error.value.keys == (key,)
    for word in words:
        assert word in str(error.value), str(error.value)


# --- property: any generated pool list loads to valid objects or one config error naming the pool key -------------

pool_dicts = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "inference", "Bad", "default"])},
    optional={
        "gpuNames": st.lists(st.sampled_from([*GPU_NAMES, "x100"]), max_size=3),
        "instanceTypes": st.lists(st.sampled_from(["p5.48xlarge", "g6.xlarge", "m5.large", "g6f.xlarge"]), max_size=2),
        "gpuCountMin": st.integers(0, 9),
        "gpuCountMax": st.integers(0, 9),
        "gpuMemoryMinGiB": st.integers(0, 300),
        "capacityTypes": st.lists(st.sampled_from(["spot", "on-demand", "reserved", "cheap"]), max_size=3),
        "capacityReservationIds": st.lists(st.sampled_from(["cr-0abc", "cr-NOPE"]), max_size=1),
        "timeSlicingReplicas": st.integers(0, 70),
        "weight": st.integers(0, 101),
        "gpuLimt": st.just(1),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(pool_dicts, min_size=1, max_size=3))
def test_generated_pools_give_valid_objects_or_one_error_naming_the_pool_key(pool_list):
    try:
        cfg = pools(gpuPools=pool_list)
    except ConfigError as error:
        assert error.keys and all(k.startswith("gpuPools") for k in error.keys), error.keys
        assert "Traceback" not in str(error)
        return
    for pool in cfg.gpu_pools:
        assert pool.matched_types
        spec = gpu_pool_spec(pool, cfg)
        assert set(matching_types(spec["template"]["spec"]["requirements"])) == set(pool.matched_types)
        for _, overlay in node_overlays(pool):
            assert int(overlay["capacity"]["nvidia.com/gpu.shared"]) >= 2


def test_render_prints_each_pools_matched_types(tmp_path):
    result = render_here("--config-file", str(THREE_POOLS), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "training (class gpu; spot; at most 16 GPUs): 2 types: p5.48xlarge, p5en.48xlarge" in result.stdout
    assert "reserved-h100 (class gpu-reserved-h100; reserved, on-demand; at most 8 GPUs): 1 type: p5.48xlarge" in (
        result.stdout
    )


def test_the_time_sliced_example_asks_the_inference_pool_for_one_slice(three_pools):
    import yaml

    _, run = three_pools
    (deployment,) = yaml.safe_load_all((PROJECT_ROOT / "examples" / "gpu-time-sliced.yaml").read_text())
    spec = deployment["spec"]["template"]["spec"]
    pool = objects(run, "NodePool")[spec["nodeSelector"]["karpenter.sh/nodepool"]]
    taint = pool["spec"]["template"]["spec"]["taints"][0]
    assert {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": taint["effect"]} in spec[
        "tolerations"
    ]
    (container,) = spec["containers"]
    overlay_resources = {r for o in objects(run, "NodeOverlay").values() for r in o["spec"]["capacity"]}
    assert set(container["resources"]["limits"]) == overlay_resources == {"nvidia.com/gpu.shared"}
