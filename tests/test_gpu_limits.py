"""GPU spend is bounded on a real cluster: each pool's rendered `limits` hold the whole GPUs to `gpuLimit` before and
after its nodes initialize (what Karpenter sums changes then: infra/gpu/limits.py cites where), the pool can reach
`gpuLimit`, and no pool admits a GPU that is not NVIDIA. The oracle is infra/gpu/limits.py; the pools are the ones
the program renders, checked against Karpenter's own instance-type reference as well as the project's catalog."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from infra.catalog.gpus import CATALOG, requirement_holds
from infra.config import ConfigError, parse_config
from infra.gpu.limits import most_gpus, most_gpus_in_one_batch, reaches
from infra.gpu.placement import OFFERING_KEYS
from infra.gpu.pools import gpu_pool_spec, node_overlays
from tests.conftest import PROJECT_ROOT, REFERENCE, render_here
from tests.pool_strategies import valid_pool_sets
from tools.render import read_stack_file

GPU_COUNT = "karpenter.k8s.aws/instance-gpu-count"


def one_pool(**pool):
    cfg = parse_config({"eks-gpu-spot:gpuPools": json.dumps([{"name": "p", **pool}])})
    return cfg, cfg.gpu_pools[0]


def rendered_limits(cfg, pool) -> dict[str, int]:
    """The NodePool's limits as the program renders them (not recomputed by the oracle)."""
    return {k: int(v) for k, v in gpu_pool_spec(pool, cfg)["limits"].items()}


@pytest.fixture(scope="module")
def karpenter_types() -> dict[str, dict[str, str]]:
    """Every instance type of Karpenter's v1.14 reference (AMD g4ad and CPU types included) -> its labels."""
    path = REFERENCE / "karpenter" / "instance-types.json"
    if not path.is_file():
        pytest.skip(f"Karpenter's instance-type reference not found at {path} (it sits beside the project root)")
    types = json.loads(path.read_text())["instance_types"]
    return {name: entry["labels"] for name, entry in types.items()}


def admitted(requirements: list[dict], karpenter_types: dict[str, dict[str, str]]) -> list[str]:
    type_requirements = [r for r in requirements if r["key"] not in OFFERING_KEYS]  # capacity type, zone: offerings
    return [n for n, labels in karpenter_types.items() if all(requirement_holds(r, labels) for r in type_requirements)]


def manufacturer(karpenter_types: dict[str, dict[str, str]], name: str) -> str | None:
    return karpenter_types[name].get("karpenter.k8s.aws/instance-gpu-manufacturer")


def gpu_count_range(requirements: list[dict]) -> tuple[int, float]:
    """The GPU counts the requirements admit, both ends included (inf: no upper bound)."""
    low = max([int(r["values"][0]) + 1 for r in requirements if r["key"] == GPU_COUNT and r["operator"] == "Gt"] or [0])
    highs = [int(r["values"][0]) - 1 for r in requirements if r["key"] == GPU_COUNT and r["operator"] == "Lt"]
    return low, min(highs) if highs else float("inf")


# --- each finding of the issue, failing before the change ----------------------------------------------------------


def test_a_time_sliced_pool_stays_bounded_once_its_nodes_initialize():
    """With rename-by-default an initialized node advertises no nvidia.com/gpu: a limit on it counts 0 per node."""
    cfg, pool = one_pool(gpuNames=["l4"], timeSlicingReplicas=4, gpuLimit=8)
    limits = rendered_limits(cfg, pool)
    assert most_gpus(pool, limits, initialized=True) is not None
    assert most_gpus(pool, limits, initialized=True) <= 8
    assert most_gpus(pool, limits, initialized=False) <= 8


def test_a_mig_pool_can_hold_its_second_node():
    """A p5.48xlarge with 7 partitions per GPU advertises 56 nvidia.com/gpu once initialized."""
    cfg, pool = one_pool(instanceTypes=["p5.48xlarge"], migProfile={"h100.80gb": "7"}, gpuLimit=16)
    limits = rendered_limits(cfg, pool)
    assert reaches(pool, limits, 16)
    assert most_gpus(pool, limits, initialized=True) <= 16
    assert most_gpus(pool, limits, initialized=False) <= 16


def launched_in_one_batch(pool, limits, replicas: int, per_pod: int) -> int:
    """The whole GPUs one scheduling pass launches for `replicas` pending pods of `per_pod` nvidia.com/gpu on the
    pool's largest type: Karpenter plans a node per `gpus // per_pod` pods (before initialization it sees the physical
    GPUs only) and creates NodeClaims while each still fits what the pass has left (scheduler.go
    filterByRemainingResources L1068-1084, subtractMax L1045-1066; `nodes` is never counted down in the pass)."""
    largest = max((CATALOG[n] for n in pool.matched_types), key=lambda t: t.gpu_count)
    wanted = -(-replicas // (largest.gpu_count // per_pod))
    allowed = most_gpus_in_one_batch(pool, limits)
    nodes = wanted if allowed is None else min(wanted, allowed // largest.gpu_count)
    return nodes * largest.gpu_count


def test_one_scheduling_batch_of_the_mig_example_stays_within_the_pools_limit():
    """examples/gpu-mig.yaml scaled to 56 replicas on mig-h100 (p5.48xlarge, gpuLimit 8: `nodes: 1`): one pass would
    plan seven p5.48xlarge, 56 GPUs, while render printed "8 / 8" (kubernetes-sigs/karpenter#2915)."""
    cfg = parse_config(read_stack_file(PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"))
    (pool,) = [p for p in cfg.gpu_pools if p.name == "mig-h100"]
    limits = rendered_limits(cfg, pool)
    assert launched_in_one_batch(pool, {"nodes": 1}, replicas=56, per_pod=1) == 56  # `nodes` alone: the overshoot
    assert limits["nodes"] == 1  # kept: it holds the pool across passes
    assert launched_in_one_batch(pool, limits, replicas=56, per_pod=1) == 8
    assert most_gpus_in_one_batch(pool, limits) == 8


def test_an_attribute_pool_admits_no_amd_gpu_of_karpenters_reference(karpenter_types):
    cfg, pool = one_pool(gpuCountMax=4)
    found = admitted(gpu_pool_spec(pool, cfg)["template"]["spec"]["requirements"], karpenter_types)
    assert found  # the pool still matches NVIDIA types
    assert not any(n.startswith("g4ad.") for n in found)
    assert {manufacturer(karpenter_types, n) for n in found} == {"nvidia"}


def test_time_slicing_overlays_cover_every_gpu_count_the_pool_admits():
    """A new L4 type with 2 GPUs would match gpuNames [l4]: without its overlay it offers no slices and, before it
    initializes, counts none under a gpu.shared limit."""
    cfg, pool = one_pool(gpuNames=["l4"], timeSlicingReplicas=2, gpuLimit=16)
    low, high = gpu_count_range(gpu_pool_spec(pool, cfg)["template"]["spec"]["requirements"])
    assert high != float("inf")
    covered = {int(r["values"][0]) for _, o in node_overlays(pool) for r in o["requirements"] if r["key"] == GPU_COUNT}
    assert covered == set(range(low, int(high) + 1))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"eks-gpu-spot:gpuPools": json.dumps([{"name": "a", "instanceTypes": ["p5.48xlarge"], "gpuLimit": 4}])},
         "gpuPools[0].gpuLimit"),
        ({"eks-gpu-spot:gpuPools": json.dumps([{"name": "a", "gpuNames": ["l4"], "gpuLimit": 6}])},
         "gpuPools[0].gpuLimit"),
        ({"eks-gpu-spot:gpuLimit": "4"}, "gpuLimit"),  # the single pool: p5.48xlarge has 8 GPUs
    ],
)  # fmt: skip
def test_a_gpu_limit_below_the_largest_types_gpus_is_one_error_naming_the_key(config, key):
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert error.value.keys == (key,)
    assert "largest type" in str(error.value) and "8 GPUs" in str(error.value)


# --- properties over generated pool sets -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pool_sets())
def test_every_pool_is_bounded_by_its_gpu_limit_in_both_phases_and_reaches_it(raw):
    cfg = parse_config(raw)
    for pool in cfg.gpu_pools:
        limits = rendered_limits(cfg, pool)
        largest = max(CATALOG[n].gpu_count for n in pool.matched_types)
        for initialized in (False, True):
            bound = most_gpus(pool, limits, initialized)
            assert bound is not None and bound <= pool.gpu_limit, (pool.name, initialized, limits)
        if pool.gpu_limit % largest == 0:
            assert reaches(pool, limits, pool.gpu_limit), (pool.name, limits)
        # One scheduling pass: never unbounded; above gpuLimit only for a MIG pool mixing types whose vCPUs per GPU
        # differ, and then by at most that ratio (the cpu limit must admit the roomiest type).
        batch = most_gpus_in_one_batch(pool, limits)
        assert batch is not None, (pool.name, limits)
        types = [CATALOG[n] for n in pool.matched_types]
        spread = max(t.gpu_count / t.vcpu for t in types) / min(t.gpu_count / t.vcpu for t in types)
        assert batch <= pool.gpu_limit * spread, (pool.name, limits, batch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pool_sets())
def test_no_pool_or_overlay_admits_a_gpu_that_is_not_nvidia(karpenter_types, raw):
    cfg = parse_config(raw)
    for pool in cfg.gpu_pools:
        requirements = gpu_pool_spec(pool, cfg)["template"]["spec"]["requirements"]
        found = admitted(requirements, karpenter_types)
        assert found and {manufacturer(karpenter_types, n) for n in found} == {"nvidia"}
        with_gpus = {n: labels for n, labels in karpenter_types.items() if GPU_COUNT in labels}
        for _, overlay in node_overlays(pool):
            # [0] is the pool's own label; an overlay adds GPU capacity, so only types with GPUs can matter.
            overlay_found = admitted(overlay["requirements"][1:], with_gpus)
            assert {manufacturer(karpenter_types, n) for n in overlay_found} <= {"nvidia"}
        if pool.time_slicing_replicas:
            low, high = gpu_count_range(requirements)
            counts = {int(o["requirements"][1]["values"][0]) for _, o in node_overlays(pool)}
            if pool.instance_types:
                assert counts == {CATALOG[n].gpu_count for n in pool.instance_types}
            else:
                assert counts == set(range(low, int(high) + 1))


def test_render_prints_each_pools_bound_in_both_phases_and_one_batch(tmp_path):
    result = render_here(
        "--config-file", str(PROJECT_ROOT / "examples/stacks/Pulumi.gpu-pools.yaml"), "--out", str(tmp_path / "o")
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert "32 / 32 / 32 (nvidia.com/gpu.shared <= 128)" in rows["inference"]
    assert "16 / 16 / 16 (nvidia.com/gpu <= 16)" in rows["training"]
    assert "8 / 8 / 8 (nodes <= 1, cpu <= 192)" in rows["mig-h100"]
