"""Training pools with EFA (README "Training pools"): the keys and their refusals, the pool pinned to one zone and
labelled for the device plugin, the plugin's release as the real chart renders it, the security group EFA traffic
needs, placement of EFA pods, and the preflight of the pool's one zone."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from infra.catalog.data import load_data
from infra.catalog.gpus import CATALOG, EFA_RESOURCE
from infra.config import parse_config
from infra.efa import CHART, CHART_VERSION, REGISTRY_ACCOUNTS, device_plugin_values
from infra.gpu.limits import TRAINING, pool_kind
from infra.gpu.placement import EFA_POOL_LABEL, Pod, untolerated
from infra.gpu.pools import exists_tolerations, pool_taints
from infra.gpu.scheduling import lands_on
from infra.gpu.stranding import EfaPlugin, Stranded, stranded
from infra.node_pools import stack_offers, stack_stranding
from tests.conftest import config_error, parse, render_stack
from tests.karpenter_crds import validate
from tools.charts import find_helm
from tools.render import kubernetes_objects

RELEASE = "kubernetes:helm.sh/v3:Release"


def pools(*items: dict) -> str:
    return json.dumps(list(items))


TRAINING_POOL = {"name": "train", "instanceTypes": ["p5.48xlarge"], "efa": True, "zone": "usw2-az2"}
INFERENCE_POOL = {"name": "serve", "instanceTypes": ["g6e.12xlarge"], "gpuLimit": 8}


def efa_pod(efa: int = 32, **selector: str) -> Pod:
    return Pod(
        requests={"nvidia.com/gpu": 8, EFA_RESOURCE: efa},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        node_selector=selector,
    )


# --- keys and refusals ---------------------------------------------------------------------------------------------


def test_a_training_pool_parses():
    (pool,) = parse(gpuPools=pools(TRAINING_POOL)).gpu_pools
    assert (pool.efa, pool.zone) == (True, "usw2-az2")
    assert pool_kind(pool) == TRAINING


@pytest.mark.parametrize(
    ("pool", "key", "said"),
    [
        ({**TRAINING_POOL, "zone": None}, "gpuPools[0].zone", "is required with efa"),
        ({**TRAINING_POOL, "zone": "us-west-2b"}, "gpuPools[0].zone", "is not a zone ID"),
        ({**TRAINING_POOL, "zone": "usw2-az9"}, "gpuPools[0].zone", "did you mean"),
        ({**TRAINING_POOL, "zone": "use1-az1"}, "gpuPools[0].zone", "usw2-az1, usw2-az2, usw2-az3, usw2-az4"),
        ({**TRAINING_POOL, "instanceTypes": ["g6.xlarge"]}, "gpuPools[0].efa", "without: g6.xlarge"),
        ({**TRAINING_POOL, "timeSlicingReplicas": 4}, "gpuPools[0].efa", "excludes timeSlicingReplicas"),
        ({**TRAINING_POOL, "efa": "maybe"}, "gpuPools[0].efa", "maybe"),
    ],
    ids=["no-zone", "zone-name", "unknown-zone", "other-region", "no-efa-type", "time-sliced", "not-a-bool"],
)
def test_each_refusal_names_the_key(pool, key, said):
    pool = {k: v for k, v in pool.items() if v is not None}
    error = str(config_error(gpuPools=pools(pool)))
    assert key in error and said in error, error


def test_zone_must_be_one_of_the_pinned_zones():
    error = str(config_error(gpuPools=pools(TRAINING_POOL), availabilityZones="usw2-az1,usw2-az3"))
    assert "gpuPools[0].zone = 'usw2-az2'" in error and "zones: usw2-az1, usw2-az3" in error
    assert parse(gpuPools=pools({**TRAINING_POOL, "zone": "usw2-az3"}), availabilityZones="usw2-az1,usw2-az3")


def test_catalog_efa_counts_come_from_karpenters_reference(reference):
    types = json.loads((reference / "karpenter" / "instance-types.json").read_text())["instance_types"]
    for name, gpu_type in CATALOG.items():
        assert gpu_type.efa == int(types[name].get("resources", {}).get(EFA_RESOURCE, 0)), name
    assert CATALOG["p5.48xlarge"].efa == 32 and CATALOG["g6.xlarge"].efa == 0


# --- the pool and the device plugin ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def efa_stack():
    return render_stack(gpuPools=pools(TRAINING_POOL, INFERENCE_POOL))


def nodepool(run, name: str) -> dict:
    (found,) = [o for o in kubernetes_objects(run) if o["kind"] == "NodePool" and o["metadata"]["name"] == name]
    return found


def test_the_training_pool_is_pinned_to_its_zone_and_labelled(efa_stack, reference):
    pool = nodepool(efa_stack, "train")
    requirements = pool["spec"]["template"]["spec"]["requirements"]
    assert {"key": "topology.k8s.aws/zone-id", "operator": "In", "values": ["usw2-az2"]} in requirements
    assert pool["spec"]["template"]["metadata"]["labels"] == {EFA_POOL_LABEL: "true"}
    other = nodepool(efa_stack, "serve")
    assert "metadata" not in other["spec"]["template"]
    assert not [r for r in other["spec"]["template"]["spec"]["requirements"] if r["key"].startswith("topology.")]
    for obj in kubernetes_objects(efa_stack):
        if obj["kind"] in ("NodePool", "EC2NodeClass"):
            assert validate(reference / "karpenter" / "crds", obj) == [], obj["metadata"]["name"]


def test_the_device_plugin_release_exists_only_when_a_pool_admits_an_efa_type(efa_stack):
    (release,) = [r for r in efa_stack.of_type(RELEASE) if r.inputs["chart"] == CHART]
    assert release.inputs["version"] == CHART_VERSION
    assert release.inputs["namespace"] == "kube-system"
    # No EFA pool, but g6e.12xlarge has EFA: a pod requesting it makes Karpenter attach EFA there (infra/efa.py).
    no_efa_pool = render_stack(gpuPools=pools(INFERENCE_POOL))
    assert [r for r in no_efa_pool.of_type(RELEASE) if r.inputs["chart"] == CHART]
    no_efa_type = render_stack(gpuPools=pools({**INFERENCE_POOL, "instanceTypes": ["g6.xlarge"]}))
    assert not [r for r in no_efa_type.of_type(RELEASE) if r.inputs["chart"] == CHART]


@pytest.mark.parametrize("region", ["us-west-2", "af-south-1", "ap-east-2", "mx-central-1"])
def test_the_plugin_image_comes_from_the_regions_registry(region):
    zone = load_data("zone_ids")["regions"][region][0]
    cfg = parse_config({"aws:region": region, "eks-gpu-spot:gpuPools": pools({**TRAINING_POOL, "zone": zone})})
    repository = device_plugin_values(cfg)["image"]["repository"]
    assert repository == f"{REGISTRY_ACCOUNTS[region]}.dkr.ecr.{region}.amazonaws.com/eks/aws-efa-k8s-device-plugin"


def test_every_region_the_stack_can_use_has_a_registry_account():
    regions = set(load_data("zone_ids")["regions"])
    assert regions <= set(REGISTRY_ACCOUNTS)
    assert REGISTRY_ACCOUNTS["af-south-1"] == "877085696533" and REGISTRY_ACCOUNTS["us-east-1"] == "602401143452"


def _rendered_daemonset(cfg, reference, tmp_path) -> dict:
    helm, why = find_helm()
    if helm is None:
        pytest.skip(why)
    archive = reference / "charts" / f"{CHART}-{CHART_VERSION}.tgz"
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(device_plugin_values(cfg)))
    out = subprocess.run(
        [helm, "template", "efa", str(archive), "--namespace", "kube-system", "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    (daemonset,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "DaemonSet"]
    return daemonset["spec"]["template"]["spec"]


def _selects(terms: list[dict], labels: dict[str, str]) -> bool:
    """Kubernetes required node affinity: terms ORed, a term's expressions ANDed (only In/NotIn appear here)."""

    def holds(e: dict) -> bool:
        return (labels.get(e["key"]) in e["values"]) is (e["operator"] == "In")

    return any(all(holds(e) for e in term["matchExpressions"]) for term in terms)


def test_the_real_chart_runs_the_plugin_on_every_node_of_an_efa_type_and_nowhere_else(reference, tmp_path):
    """Every pool's nodes, EFA pool or not, shared or not, get the plugin exactly when their type has EFA: the
    affinity and tolerations as `helm template` renders them, evaluated with Kubernetes' affinity semantics."""
    shared = {**TRAINING_POOL, "name": "train-b", "instanceTypes": ["p5en.48xlarge"], "capacityTypes": ["on-demand"]}
    sliced = {"name": "sliced", "instanceTypes": ["g6.12xlarge", "g6.xlarge"], "timeSlicingReplicas": 4}
    cfg = parse(gpuPools=pools(TRAINING_POOL, shared, INFERENCE_POOL, sliced))
    spec = _rendered_daemonset(cfg, reference, tmp_path)
    assert spec["containers"][0]["image"].startswith("602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/")
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    seen = set()
    for pool in cfg.gpu_pools:
        labels = {EFA_POOL_LABEL: "true"} if pool.efa else {}
        assert untolerated(pool_taints(pool), spec["tolerations"]) == [], pool.name
        for name in pool.matched_types:
            node = {**labels, "node.kubernetes.io/instance-type": name, "eks.amazonaws.com/compute-type": "ec2"}
            assert _selects(terms, node) is (CATALOG[name].efa > 0), (pool.name, name)
            seen.add((name, CATALOG[name].efa > 0))
    assert ("g6.xlarge", False) in seen and ("g6.12xlarge", True) in seen
    # An EFA pool's node of a type newer than the catalog still gets it, by the pool's label.
    assert _selects(terms, {EFA_POOL_LABEL: "true", "node.kubernetes.io/instance-type": "p7.96xlarge"})


def test_efa_nodes_use_the_cluster_security_group_that_allows_all_traffic_to_itself(efa_stack):
    """EKS's cluster security group allows all traffic from itself (EKS user guide, sec-group-reqs: inbound All/All
    from Self; outbound to Self "for EFA traffic"): the nodes must be in that group and no other."""
    cluster_name = efa_stack.outputs["cluster_name"]
    (gpu_class,) = [
        o for o in kubernetes_objects(efa_stack) if o["kind"] == "EC2NodeClass" and o["metadata"]["name"] == "gpu"
    ]
    assert gpu_class["spec"]["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": cluster_name}}]
    tags = [r for r in efa_stack.of_type("aws:ec2/tag:Tag") if r.inputs["key"] == "karpenter.sh/discovery"]
    (tag,) = tags
    eks = efa_stack.one("eks:index:Cluster")
    assert tag.inputs["resourceId"].startswith("sg-offline-")
    assert efa_stack.depends_on(tag, eks)  # the resource id is the EKS cluster's own clusterSecurityGroupId
    assert not efa_stack.of_type("aws:ec2/securityGroup:SecurityGroup")  # no group of ours to drift from it


# --- placement ------------------------------------------------------------------------------------------------------


def test_an_efa_pod_lands_on_the_training_pool():
    offers = stack_offers(parse(gpuPools=pools(TRAINING_POOL, INFERENCE_POOL)))
    assert lands_on(efa_pod(), offers) == "train"
    assert lands_on(efa_pod(**{EFA_POOL_LABEL: "true"}), offers) == "train"
    # More EFA than any type of the pool has: nowhere.
    assert lands_on(efa_pod(efa=33), offers) is None
    # A pod pinned to another zone does not fit the pool.
    zoned = Pod(efa_pod().requests, efa_pod().tolerations, {"topology.k8s.aws/zone-id": "usw2-az1"})
    assert lands_on(zoned, offers) is None


def test_a_heavier_pool_of_efa_types_serves_efa_pods_it_used_to_strand():
    """Before, the plugin ran only on EFA pools' nodes: the pod went to zz-h100 (weight 50) and its node never
    initialized. Now the plugin runs there too (infra/gpu/stranding.py efa_plugin): the same node serves it."""
    other = {"name": "zz-h100", "instanceTypes": ["p5.48xlarge"], "weight": 50}
    cfg = parse(gpuPools=pools(TRAINING_POOL, other))
    offers, by_name, plugin = stack_stranding(cfg)
    assert lands_on(efa_pod(), offers) == "zz-h100"
    old = EfaPlugin([EFA_POOL_LABEL], ["true"], exists_tolerations([p for p in cfg.gpu_pools if p.efa]))
    assert stranded(efa_pod(), offers, by_name, old) == Stranded("zz-h100", EFA_RESOURCE)
    assert stranded(efa_pod(), offers, by_name, plugin) is None
    assert lands_on(efa_pod(**{EFA_POOL_LABEL: "true"}), offers) == "train"


def test_render_no_longer_warns_about_the_pool_it_used_to_strand(tmp_path):
    from tests.conftest import render_here

    other = {"name": "zz-h100", "instanceTypes": ["p5.48xlarge"], "weight": 50}
    stack = tmp_path / "Pulumi.efa.yaml"
    stack.write_text(
        yaml.safe_dump({"config": {"aws:region": "us-west-2", "eks-gpu-spot:gpuPools": [TRAINING_POOL, other]}})
    )
    result = render_here("--config-file", str(stack), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "where no EFA device plugin runs" not in result.stdout
    [zz] = [line for line in result.stdout.splitlines() if line.strip().startswith("zz-h100 ") and "NoSchedule" in line]
    assert "EFA: served" in zz
    [row] = [line for line in result.stdout.splitlines() if line.strip().startswith("train ") and "NoSchedule" in line]
    assert "whole GPUs + EFA" in row and "nvidia.com/gpu, vpc.amazonaws.com/efa" in row and "in usw2-az2" in row


def test_the_critical_path_does_not_grow_with_an_efa_pool():
    from tools.render import stack_critical_path

    with_efa = stack_critical_path(render_stack(gpuPools=pools(TRAINING_POOL)))
    without = stack_critical_path(render_stack(gpuPools=pools({**TRAINING_POOL, "efa": False, "zone": None})))
    assert with_efa.estimate_seconds == without.estimate_seconds
    assert not [s for s in with_efa.path if "efa" in s.urn]
