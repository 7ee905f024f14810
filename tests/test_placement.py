"""Pods land where they should: shared GPU pools (time-slicing, MIG) carry a taint of their own, so a whole-GPU pod
is never placed there. The oracle is the cited placement model (infra/gpu/placement.py) over the pools exactly as
the program renders them (infra/node_pools.py stack_offers); examples land where their comments say."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.config import parse_config
from infra.gpu.placement import Pod, PoolOffer, tolerates, untolerated
from infra.gpu.pools import GPU_TAINT, SHARING_TAINT_KEY, pool_taints, requested_resource
from infra.gpu.scheduling import candidate_pools, lands_on, schedule
from infra.node_pools import stack_offers
from tests.conftest import PROJECT_ROOT
from tests.pool_strategies import valid_pool_sets
from tests.readme import parse_readme
from tools.render import pool_table_lines, pool_table_rows, read_stack_file

EXAMPLE_STACK = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
# How a Deployment's replicas pack, pending together (infra/gpu/scheduling.py: in-flight claims first).
PACKS_ONTO = re.compile(r"^# packs onto: (?P<nodes>\d+) nodes? of (?P<gpus>\d+) GPUs?$", re.MULTILINE)
LANDS_ON = re.compile(r"^# lands on: (?P<pool>[a-z0-9-]+) \(stack (?P<stack>\S+)\)$", re.MULTILINE)


def whole_gpu_pod(gpus: int = 1, tolerations=(GPU_TOLERATION,)) -> Pod:
    return Pod(requests={"nvidia.com/gpu": gpus}, tolerations=list(tolerations))


@pytest.fixture(scope="module")
def example_cfg():
    return parse_config(read_stack_file(EXAMPLE_STACK))


# --- the kubernetes rules the model follows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, True),
        ({"key": "nvidia.com/gpu", "value": "true"}, True),  # Equal is the default operator, empty effect matches all
        ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "false"}, False),
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"operator": "Exists"}, True),  # tolerates everything
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_toleration_semantics_are_kubernetes(toleration, expected):
    assert tolerates(toleration, GPU_TAINT) is expected


def test_prefer_no_schedule_never_blocks():
    assert untolerated([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}], []) == []


# --- the finding: a whole-GPU pod reached a shared pool --------------------------------------------------------------


def test_a_whole_gpu_pod_tolerating_only_the_gpu_taint_never_reaches_a_shared_pool(example_cfg):
    """Before, every GPU pool carried only nvidia.com/gpu: such a pod went to `inference` (weight 50) and waited on a
    node that never advertises nvidia.com/gpu."""
    found = candidate_pools(whole_gpu_pod(), stack_offers(example_cfg))
    assert "inference" not in found and "mig-h100" not in found
    assert found == ["reserved-h100", "training"]  # weight 100 first, then the unweighted pool


def test_shared_pools_carry_the_gpu_taint_and_their_own(example_cfg):
    taints = {pool.name: pool_taints(pool) for pool in example_cfg.gpu_pools}
    sharing = {"key": SHARING_TAINT_KEY, "effect": "NoSchedule"}
    assert taints["inference"] == [GPU_TAINT, {**sharing, "value": "time-slicing"}]
    assert taints["mig-h100"] == [GPU_TAINT, {**sharing, "value": "mig"}]
    assert taints["training"] == [GPU_TAINT]


def test_a_blanket_toleration_still_reaches_shared_pools(example_cfg):
    """README says so: `operator: Exists` with no key tolerates every taint, the sharing one included."""
    found = candidate_pools(whole_gpu_pod(tolerations=[{"operator": "Exists"}]), stack_offers(example_cfg))
    assert "mig-h100" in found


def test_a_slice_pod_without_the_sharing_toleration_lands_nowhere(example_cfg):
    pod = Pod(requests={"nvidia.com/gpu.shared": 1}, tolerations=[GPU_TOLERATION])
    assert lands_on(pod, stack_offers(example_cfg)) is None


def test_a_custom_label_the_pool_does_not_define_is_denied_and_a_well_known_one_is_not(example_cfg):
    offers = stack_offers(example_cfg)
    assert lands_on(Pod(requests={"nvidia.com/gpu": 1}, tolerations=[GPU_TOLERATION], node_selector={"team": "a"}),
                    offers) is None  # fmt: skip
    zone = {"topology.kubernetes.io/zone": "us-east-1a"}
    assert lands_on(Pod(requests={"nvidia.com/gpu": 1}, tolerations=[GPU_TOLERATION], node_selector=zone), offers)


def test_a_pod_asking_more_gpus_than_any_type_holds_lands_nowhere(example_cfg):
    assert lands_on(whole_gpu_pod(gpus=9), stack_offers(example_cfg)) is None


# --- properties over generated pool sets -----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pool_sets(), st.sampled_from([1, 2, 4, 8]), st.booleans())
def test_no_whole_gpu_pod_reaches_a_shared_pool(raw, gpus, exists_operator):
    cfg = parse_config(raw)
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists"} if exists_operator else GPU_TOLERATION
    found = candidate_pools(whole_gpu_pod(gpus, [toleration]), stack_offers(cfg))
    shared = {p.name for p in cfg.gpu_pools if p.time_slicing_replicas or p.mig_profile}
    assert not shared & set(found)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pool_sets())
def test_a_pod_with_a_pools_tolerations_and_resource_reaches_it(raw):
    cfg = parse_config(raw)
    offers = stack_offers(cfg)
    for pool in cfg.gpu_pools:
        tolerations = [{**t, "operator": "Equal"} for t in pool_taints(pool)]
        pod = Pod(requests={requested_resource(pool): 1}, tolerations=tolerations)
        assert pool.name in candidate_pools(pod, offers)
        selected = Pod(pod.requests, pod.tolerations, node_selector={"karpenter.sh/nodepool": pool.name})
        assert lands_on(selected, offers) == pool.name


# --- examples and the table render and README print ------------------------------------------------------------------


def example_files():
    return sorted((PROJECT_ROOT / "examples").glob("*.yaml"))


def pod_specs(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.name)
def test_every_example_lands_where_its_comment_says(example):
    claims = LANDS_ON.findall(example.read_text())
    assert len(claims) == 1, f"{example.name}: one '# lands on: <pool> (stack <file>)' line"
    ((pool, stack),) = claims
    offers = stack_offers(parse_config(read_stack_file(PROJECT_ROOT / stack)))
    specs = list(pod_specs(example))
    assert specs
    for name, spec in specs:
        assert lands_on(Pod.from_spec(spec), offers) == pool, name
        # ...and lands there by its tolerations and request alone, not only by its node selector.
        unselected = {k: v for k, v in spec.items() if k != "nodeSelector"}
        assert pool in candidate_pools(Pod.from_spec(unselected), offers), name
    for nodes, gpus in PACKS_ONTO.findall(example.read_text()):
        ((name, spec, replicas),) = [(n, s, r) for n, s, r in deployments(example)]
        claims = schedule([Pod.from_spec(spec)] * replicas, offers).claims
        assert [(c.pool.name, c.gpus) for c in claims] == [(pool, int(gpus))] * int(nodes), name


def deployments(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "Deployment":
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"], doc["spec"].get("replicas", 1)


def test_readme_shows_the_example_stacks_table_as_render_prints_it(example_cfg):
    for path in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "README.zh-CN.md"):
        readme = parse_readme(path)
        section = readme.section("Which pod lands where" if path.name == "README.md" else "哪个 pod 落在哪里")
        (table,) = [t for t in readme.tables if t.section == section]
        rows = [tuple(cell.replace("`", "") for cell in row) for row in table.rows]
        assert rows[1:] == pool_table_rows(example_cfg)[1:], path.name


def test_render_says_in_one_line_what_the_model_does_not_cover(example_cfg):
    lines = pool_table_lines(example_cfg)
    (line,) = [line for line in lines if "does not cover" in line]
    assert "DaemonSet overhead" in line and line == lines[len(pool_table_rows(example_cfg)) + 1]


def test_pool_offers_read_weight_taints_and_the_pool_label():
    offer = PoolOffer.from_spec(
        "p",
        {"weight": 7, "template": {"spec": {"taints": [GPU_TAINT], "requirements": []}}},
    )
    assert (offer.weight, offer.taints, offer.labels) == (7, [GPU_TAINT], {"karpenter.sh/nodepool": "p"})


# --- the six disagreements with Karpenter v1.14.1 (issue 33), closed -------------------------------------------------


def test_a_general_pools_own_requirements_are_checked(example_cfg):
    """`default` admits c/m/r only (infra/node_pools.py): Karpenter leaves a CPU pod asking for category g Pending
    (requirements.go Compatible: the pool defines the key, the values do not intersect)."""
    offers = stack_offers(example_cfg)
    assert lands_on(Pod(node_selector={"karpenter.k8s.aws/instance-category": "g"}), offers) is None
    assert lands_on(Pod(node_selector={"karpenter.k8s.aws/instance-category": "m"}), offers) == "default"


def test_well_known_labels_are_keys_not_domains(example_cfg):
    """K pkg/apis/v1/labels.go L75-84 lists keys; `kubernetes.io/hostname` is a new node's own (nodeclaim.go L97)."""
    offers = stack_offers(example_cfg)
    gpu = {"requests": {"nvidia.com/gpu": 1}, "tolerations": [GPU_TOLERATION]}
    assert lands_on(Pod(**gpu, node_selector={"kubernetes.io/team": "a"}), offers) is None
    assert lands_on(Pod(**gpu, node_selector={"kubernetes.io/hostname": "node-1"}), offers) is None
    # The catalog now carries size, category, generation and CPU manufacturer: a value no type has is Pending...
    assert lands_on(Pod(**gpu, node_selector={"karpenter.k8s.aws/instance-size": "nano"}), offers) is None
    # ...and one the pool's types have lands.
    p5_labels = {"category": "p", "generation": "5", "size": "48xlarge", "cpu-manufacturer": "amd"}
    p5 = {f"karpenter.k8s.aws/instance-{k}": v for k, v in p5_labels.items()}
    assert lands_on(Pod(**gpu, node_selector=p5), offers) == "reserved-h100"


def test_fit_uses_allocatable_not_raw_vcpus(example_cfg):
    """p5.48xlarge has 192 vCPUs but 191450m allocatable (Karpenter's reference catalog): `cpu: 192` never fits."""
    offers = stack_offers(example_cfg)
    gpu = {"tolerations": [GPU_TOLERATION]}
    assert lands_on(Pod(requests={"nvidia.com/gpu": 8, "cpu": 192}, **gpu), offers) is None
    assert lands_on(Pod(requests={"nvidia.com/gpu": 8, "cpu": 191.45}, **gpu), offers) == "reserved-h100"


def test_a_pool_at_its_limit_falls_through_to_the_next(example_cfg):
    """scheduler.go L706-724: reserved-h100 (weight 100) has no GPU left; the pod goes to training, not Pending."""
    offers = stack_offers(example_cfg)
    pod = whole_gpu_pod()
    assert lands_on(pod, offers) == "reserved-h100"
    assert lands_on(pod, offers, used={"reserved-h100": {"nvidia.com/gpu": 8}}) == "training"
    assert (
        lands_on(pod, offers, used={"reserved-h100": {"nvidia.com/gpu": 8}, "training": {"nvidia.com/gpu": 16}}) is None
    )


def test_a_preference_is_required_first_then_relaxed(example_cfg):
    """requirements.go L90-110, preferences.go L59-72: a preference Karpenter can meet picks the pool over weight."""
    offers = stack_offers(example_cfg)
    training = [(1, [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["training"]}])]
    assert lands_on(Pod({"nvidia.com/gpu": 1}, [GPU_TOLERATION], preferred_terms=training), offers) == "training"
    nowhere = [(1, [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["absent"]}])]
    assert lands_on(Pod({"nvidia.com/gpu": 1}, [GPU_TOLERATION], preferred_terms=nowhere), offers) == "reserved-h100"


def test_pods_fill_the_claim_in_flight_first_which_narrows_its_types(example_cfg):
    """scheduler.go L582-612: eight one-slice pods go onto one claim; only types with 8 slices (2+ GPUs at 4 slices
    each) hold them all, so the claim launches a 4-GPU type (no L4/A10G/L40S type has 2 GPUs), not two 1-GPU nodes."""
    slice_pod = Pod({"nvidia.com/gpu.shared": 1}, [GPU_TOLERATION, {"key": SHARING_TAINT_KEY, "operator": "Exists"}])
    result = schedule([slice_pod] * 8, stack_offers(example_cfg))
    (claim,) = result.claims
    assert claim.pool.name == "inference" and claim.gpus == 4
    (four,) = schedule([slice_pod] * 4, stack_offers(example_cfg)).claims
    assert four.gpus == 1
