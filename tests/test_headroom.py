"""Warm GPU headroom (gpuPools[i].headroom) and the Spot recovery-time model.

Oracles from outside the project: Karpenter 1.14.1's CapacityBuffer CRD with its CEL rules (../shared/reference),
its chart's values and RBAC, and Karpenter's generated price table (the mirror, when present). The recovery model is
checked against its own data file: the numbers add up and headroom removes exactly the launch and boot steps.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from infra.catalog.data import load_data
from infra.catalog.gpus import CATALOG
from infra.gpu.headroom import headroom_manifests, headroom_usage, uses_headroom, warm_nodes
from infra.gpu.limits import GPU_RESOURCE, NODES, counted, pool_limits
from infra.gpu.placement import Pod
from infra.gpu.recovery import PRIVATE, PUBLIC, SNAPSHOT, image_path, pool_recovery, steps, total
from infra.gpu.scheduling import lands_on
from infra.node_pools import stack_offers
from tests.conftest import PROJECT_ROOT, config_error, parse, render_here, run_stack_file
from tests.karpenter_crds import validate
from tools.generate_prices import prices_from_go
from tools.render import kubernetes_objects, read_stack_file

EXAMPLE_STACK = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"
# A git clone of aws/karpenter-provider-aws (any checkout holding tag v1.14.1), to regenerate the price table from.
PRICING_SOURCE = os.environ.get("KARPENTER_PROVIDER_AWS_GIT", "")


def pools(*items: dict) -> str:
    return json.dumps(list(items))


def one_pool(**keys):
    return parse(gpuPools=pools({"name": "warm", **keys})).effective_gpu_pools[0]


@pytest.fixture(scope="module")
def example():
    return run_stack_file(EXAMPLE_STACK, "gpu-pools")


@pytest.fixture(scope="module")
def example_cfg():
    from infra.config import parse_config

    return parse_config(read_stack_file(EXAMPLE_STACK))


def objects_of(run, kind):
    return {o["metadata"]["name"]: o for o in kubernetes_objects(run) if o["kind"] == kind}


# --- the objects ------------------------------------------------------------------------------------------------------


def test_rendered_buffer_passes_the_crd_and_points_at_its_template(example, reference):
    (buffer,) = objects_of(example, "CapacityBuffer").values()
    template = objects_of(example, "PodTemplate")[buffer["spec"]["podTemplateRef"]["name"]]
    assert validate(reference / "karpenter" / "crds", buffer) == []
    assert buffer["metadata"]["namespace"] == template["metadata"]["namespace"]  # resolve.go looks in its namespace
    assert buffer["spec"]["replicas"] == 8


def test_the_crd_rejects_a_buffer_without_a_size_or_with_two_sources(reference):
    _, buffer = headroom_manifests(one_pool(instanceTypes=["g6.xlarge"], headroom=2))
    crds = reference / "karpenter" / "crds"
    unsized = copy.deepcopy(buffer)
    del unsized["spec"]["replicas"]
    assert [v.message for v in validate(crds, unsized)] == [
        "If podTemplateRef is set, replicas or limits must also be set"
    ]
    both = copy.deepcopy(buffer)
    both["spec"]["scalableRef"] = {"kind": "Deployment", "name": "x"}
    assert [v.message for v in validate(crds, both)] == [
        "You must define either PodTemplateRef or ScalableRef, but not both"
    ]


def test_no_headroom_no_buffer_and_no_feature_gate(stack):
    assert objects_of(stack, "CapacityBuffer") == {} and objects_of(stack, "PodTemplate") == {}
    karpenter = next(r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter")
    assert karpenter.inputs["values"]["settings"]["featureGates"]["capacityBuffer"] is False


def test_the_gate_the_program_sets_is_the_one_the_chart_reads(example, reference):
    """The chart turns settings.featureGates.capacityBuffer into FEATURE_GATES CapacityBuffer=..., and grants the
    controller read access to buffers and pod templates (the published 1.14.1 chart archive)."""
    karpenter = next(r for r in example.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "karpenter")
    assert karpenter.inputs["values"]["settings"]["featureGates"]["capacityBuffer"] is True
    with tarfile.open(reference / "charts" / "karpenter-1.14.1.tgz") as chart:
        deployment = chart.extractfile("karpenter/templates/deployment.yaml").read().decode()
        role = chart.extractfile("karpenter/templates/clusterrole-core.yaml").read().decode()
    # The ClusterRole's static rules: from `rules:` up to the values-driven additions.
    rules = yaml.safe_load(role[role.index("rules:") : role.index("{{- with .Values.additionalClusterRoleRules")])
    assert "CapacityBuffer={{ .Values.settings.featureGates.capacityBuffer }}" in deployment
    readable = {
        (g, r)
        for rule in rules["rules"]
        if "list" in rule["verbs"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {("autoscaling.x-k8s.io", "capacitybuffers"), ("", "podtemplates")} <= readable


# --- placement and limits -------------------------------------------------------------------------------------------


def test_the_placeholder_lands_on_its_own_pool(example_cfg):
    """Karpenter schedules the buffer's virtual pods from the template's spec like real pods (virtualpods.go
    BuildVirtualPods): by the placement model, they land on the pool whose headroom they are and nowhere else."""
    offers = stack_offers(example_cfg)
    for pool in example_cfg.effective_gpu_pools:
        if pool.headroom:
            template, _ = headroom_manifests(pool)
            assert lands_on(Pod.from_spec(template["template"]["spec"]), offers) == pool.name


def test_the_buffer_is_counted_in_the_pools_limits_before_and_after_initialization():
    """The buffer's nodes are ordinary NodeClaims of the pool: each counts what limits.counted says, in both phases,
    and the warm GPUs leave the rest of gpuLimit to work."""
    pool = one_pool(instanceTypes=["g6.xlarge", "g6.12xlarge"], gpuLimit=12, headroom=3)
    warm = warm_nodes(pool)
    limit = pool_limits(pool)[GPU_RESOURCE]
    for initialized in (False, True):
        usage = headroom_usage(pool, initialized)
        one = counted(pool, CATALOG[warm.instance_type], initialized)
        gpu_type = CATALOG[warm.instance_type]
        # Karpenter counts every resource of a node (statenode.go Capacity()): nodes, GPUs and vCPUs alike.
        assert usage == {
            NODES: warm.nodes,
            GPU_RESOURCE: warm.nodes * one[GPU_RESOURCE],
            "cpu": warm.nodes * gpu_type.vcpu,
        }
        assert pool.headroom <= usage[GPU_RESOURCE] <= limit
    assert limit - headroom_usage(pool, True)[GPU_RESOURCE] == 12 - warm.gpus


def test_warm_nodes_are_the_cheapest_single_type_fill_by_list_price():
    pool = one_pool(instanceTypes=["g6.xlarge", "g6.12xlarge"], gpuLimit=12, headroom=3)
    prices = load_data("gpu_prices")["on_demand_usd_per_hour"]
    fills = {t: math.ceil(3 / CATALOG[t].gpu_count) * prices[t] for t in ("g6.xlarge", "g6.12xlarge")}
    warm = warm_nodes(pool)
    assert warm.usd_per_hour == pytest.approx(min(fills.values()))
    assert warm.gpus >= 3


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"instanceTypes": ["g6.xlarge"], "gpuLimit": 4, "headroom": 5}, "is above gpuLimit (4)"),
        ({"instanceTypes": ["g6.xlarge"], "timeSlicingReplicas": 4, "headroom": 1}, "excludes timeSlicingReplicas"),
        (
            {"instanceTypes": ["p5.48xlarge"], "capacityTypes": ["on-demand"], "replicas": 1, "headroom": 8},
            "excludes replicas",
        ),
        ({"instanceTypes": ["g6.xlarge"], "headroom": 0}, "positive number of whole GPUs"),
    ],
)
def test_bad_headroom_is_one_error_naming_the_key(keys, says):
    message = str(config_error(gpuPools=pools({"name": "warm", **keys})))
    assert "gpuPools[0].headroom" in message and says in message


# --- the recovery model ---------------------------------------------------------------------------------------------


def test_every_step_has_a_source_and_the_numbers_add_up():
    data = load_data("recovery_time")
    assert data["warning"]["seconds"] == 120 and "two minutes" in data["warning"]["source"]
    for path in (SNAPSHOT, PRIVATE, PUBLIC):
        found = steps(path)
        assert all(s.source and s.seconds >= 0 for s in found)
        expected = 0.0
        for entry in data["steps"]:
            expected += (entry["by_image_path"][path] if "by_image_path" in entry else entry)["seconds"]
        assert total(found, headroom=False) == expected


def test_headroom_shortens_the_path_by_exactly_launch_and_boot():
    for path in (SNAPSHOT, PRIVATE, PUBLIC):
        found = steps(path)
        skipped = {s.id: s.seconds for s in found if s.headroom_skips}
        assert set(skipped) == {"launch", "boot"}
        assert total(found, headroom=False) - total(found, headroom=True) == sum(skipped.values()) > 0


def test_the_image_path_follows_the_stack():
    assert image_path(parse()) == PRIVATE
    assert image_path(parse(imageCache="false")) == PUBLIC
    assert image_path(parse(gpuImageCacheSnapshotId="snap-0123456789abcdef0")) == SNAPSHOT
    pulls = {p: next(s.seconds for s in steps(p) if s.id == "image_pull") for p in (SNAPSHOT, PRIVATE, PUBLIC)}
    assert pulls[SNAPSHOT] < pulls[PRIVATE] < pulls[PUBLIC]


def test_render_prints_each_spot_pools_recovery(example_cfg, tmp_path):
    result = render_here("--config-file", str(EXAMPLE_STACK), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    training = next(p for p in example_cfg.effective_gpu_pools if p.name == "training")
    r = pool_recovery(example_cfg, training)
    warm = warm_nodes(training)
    assert (
        f"  training: replacement running after ~{r.cold_seconds:.0f} s (with headroom ~{r.warm_seconds:.0f} s); "
        f"headroom 8 GPUs of gpuLimit 16, paid while idle: ~${warm.usd_per_hour:.2f}/h (1 x {warm.instance_type}"
    ) in result.stdout
    assert "  mig-h100: " not in result.stdout.split("Spot interruption recovery")[1]  # On-Demand only: no warning


def test_uses_headroom_only_when_a_pool_has_it(example_cfg):
    assert uses_headroom(example_cfg) and not uses_headroom(parse())


# --- prices -----------------------------------------------------------------------------------------------------------


def test_prices_are_karpenters_generated_table(tmp_path):
    if not PRICING_SOURCE or not Path(PRICING_SOURCE).exists():
        pytest.skip("set KARPENTER_PROVIDER_AWS_GIT to a git clone of aws/karpenter-provider-aws to check the prices")
    go = subprocess.run(
        ["git", "-C", PRICING_SOURCE, "show", "v1.14.1:pkg/providers/pricing/zz_generated.pricing_aws.go"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert prices_from_go(go) == load_data("gpu_prices")


def test_readme_trade_table_is_what_the_model_says(example_cfg):
    from tests.readme import parse_readme

    l4 = parse(gpuPools=pools({"name": "l4", "gpuNames": ["l4"], "gpuCountMax": 1, "headroom": 1}))
    expected = []
    for cfg, name in ((example_cfg, "training"), (l4, "l4")):
        pool = next(p for p in cfg.effective_gpu_pools if p.name == name)
        r, warm = pool_recovery(cfg, pool), warm_nodes(pool)
        expected.append(
            [
                str(pool.headroom),
                f"{warm.nodes} x {warm.instance_type}",
                f"{r.cold_seconds:.0f}",
                f"{r.warm_seconds:.0f}",
                f"{r.saved_seconds:.0f}",
                f"{warm.usd_per_hour:.2f}",
            ]
        )
    for path, title in ((PROJECT_ROOT / "README.md", "Recovering from a Spot interruption"),
                        (PROJECT_ROOT / "README.zh-CN.md", "从 Spot 中断中恢复")):  # fmt: skip
        readme = parse_readme(path)
        trade = [t for t in readme.tables if t.section == readme.section(title)][-1]
        assert [row[1:] for row in trade.rows[1:]] == expected, path.name
