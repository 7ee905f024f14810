"""Node repair must never replace a healthy GPU node: the node monitoring agent's DCGM server reaches every GPU node.

The chain (README "Node repair"): the agent on a GPU node reports `DCGMError` (Fatal for AcceleratedHardwareReady)
when no DCGM host engine answers on localhost:5555; the engine is the add-on's `dcgm-server` DaemonSet, which only
runs where it tolerates the node's taints and its affinity admits the instance type; Karpenter's nodeRepair replaces
a node whose AcceleratedHardwareReady stays False for 10 minutes. These tests check the add-on configuration the
program renders against every GPU pool's taints and types, and, where helm and the published chart are at hand, the
DaemonSet the real chart renders from it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from infra.catalog.gpus import CATALOG, requirement_holds
from infra.config import parse_config
from infra.gpu.placement import untolerated
from infra.gpu.pools import gpu_pool_spec
from infra.node_health import node_monitoring_configuration
from tests.conftest import PROJECT_ROOT, REFERENCE, run_stack_file
from tests.pool_strategies import valid_pool_sets
from tools.charts import find_helm
from tools.render import kubernetes_objects

ADDON = "aws:eks/addon:Addon"
NODE_MONITORING = "eks-node-monitoring-agent"
STACK_FILES = (PROJECT_ROOT / "Pulumi.dev.yaml", PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml")
# The add-on's configuration schema (aws/eks-node-monitoring-agent charts/configuration.schema.json, v1.6.1 L81-105
# and v1.7.0): `dcgmAgent` allows podAnnotations, podLabels, resources, resizePolicy, tolerations (and from v1.7.0
# affinity, nodeSelector, priorityClassName), with additionalProperties false; tolerations are an array of objects.
SCHEMA_DCGM_KEYS = {"tolerations": list, "affinity": dict}
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
GPU_MANUFACTURER = "karpenter.k8s.aws/instance-gpu-manufacturer"


def addon(run, name: str = NODE_MONITORING):
    (found,) = [r for r in run.of_type(ADDON) if r.inputs["addonName"] == name]
    return found


def configuration(run) -> dict:
    return json.loads(addon(run).inputs["configurationValues"])


def gpu_pool_taints(run) -> list[dict]:
    pools = [o for o in kubernetes_objects(run) if o["kind"] == "NodePool" and o["metadata"]["name"] != "default"]
    return [taint for pool in pools for taint in pool["spec"]["template"]["spec"].get("taints", [])]


def chart_version(run) -> str:
    """The chart release of the add-on version: v1.7.0-eksbuild.1 -> 1.7.0 (the chart's values pin that image)."""
    return addon(run).inputs["addonVersion"].removeprefix("v").split("-")[0]


@pytest.fixture(scope="module", params=STACK_FILES, ids=lambda p: p.stem)
def committed(request):
    return run_stack_file(request.param, request.param.stem.removeprefix("Pulumi."))


def test_the_configuration_uses_only_keys_of_the_addon_schema(committed):
    config = configuration(committed)
    assert set(config) == {"dcgmAgent"}
    for key, value in config["dcgmAgent"].items():
        assert isinstance(value, SCHEMA_DCGM_KEYS[key]), key
    assert all(isinstance(t, dict) for t in config["dcgmAgent"]["tolerations"])


def test_the_dcgm_server_tolerates_every_gpu_pool_taint_of_the_committed_stacks(committed):
    taints = gpu_pool_taints(committed)
    assert taints  # every GPU pool is tainted
    assert untolerated(taints, configuration(committed)["dcgmAgent"]["tolerations"]) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_pool_sets())
def test_the_dcgm_server_tolerates_every_gpu_pool_taint_of_generated_stacks(raw):
    """The pure functions the program calls (the committed stacks above go through the engine): the add-on's
    configuration against every taint of every rendered NodePool spec."""
    cfg = parse_config(raw)
    taints = [t for pool in cfg.gpu_pools for t in gpu_pool_spec(pool, cfg)["template"]["spec"]["taints"]]
    assert taints
    tolerations = node_monitoring_configuration()["dcgmAgent"]["tolerations"]
    assert untolerated(taints, tolerations) == []


# --- the real chart, rendered as EKS would install the add-on -------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> str:
    found, why = find_helm()
    if found is None:
        pytest.skip(f"{why.removeprefix('charts: ').split(';')[0]}; bash .ci/run installs it")
    return found


def dcgm_server(helm: str, run, tmp_path) -> dict:
    archive = REFERENCE / "charts" / f"{NODE_MONITORING}-{chart_version(run)}.tgz"
    if not archive.is_file():
        pytest.skip(f"the pinned add-on's chart archive is not in {archive.parent}")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(configuration(run)))
    result = subprocess.run(
        [helm, "template", NODE_MONITORING, str(archive), "--namespace", "kube-system", "-f", str(values)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (daemonset,) = [d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "dcgm-server"]
    return daemonset["spec"]["template"]["spec"]


def admits(affinity: dict, labels: dict[str, str]) -> bool:
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return any(all(requirement_holds(e, labels) for e in term["matchExpressions"]) for term in terms)


def test_the_chart_renders_a_dcgm_server_that_reaches_every_gpu_node(helm, committed, tmp_path):
    pod = dcgm_server(helm, committed, tmp_path)
    assert untolerated(gpu_pool_taints(committed), pod.get("tolerations", [])) == []
    pools = [o for o in kubernetes_objects(committed) if o["kind"] == "NodePool" and o["metadata"]["name"] != "default"]
    for pool in pools:
        requirements = pool["spec"]["template"]["spec"]["requirements"]
        for name, gpu_type in CATALOG.items():
            if all(requirement_holds(r, gpu_type.labels) for r in requirements if r["key"] in gpu_type.labels):
                assert admits(pod["affinity"], gpu_type.labels), f"{name} ({pool['metadata']['name']})"


def reference_catalog(reference) -> dict[str, dict[str, str]]:
    """Every instance type of Karpenter's reference (v1.14 docs) with the labels Karpenter puts on its nodes."""
    types = json.loads((reference / "karpenter" / "instance-types.json").read_text())["instance_types"]
    return {name: t["labels"] for name, t in types.items()}


def monitored_nvidia(labels: dict[str, str]) -> bool:
    """Where the agent asks DCGM: NVIDIA hardware on amd64. On arm64 (g5g) the agent disables its NVIDIA monitor and
    never reports DCGMError (aws/eks-node-monitoring-agent v1.7.0 monitors/nvidia/monitor.go L86-90), and the chart
    keeps `dcgm-server` off arm64 too (values.yaml `dcgmAgent.affinity`, "Only schedule on amd64 nodes")."""
    return labels.get(GPU_MANUFACTURER) == "nvidia" and labels["kubernetes.io/arch"] == "amd64"


def test_the_chart_admits_the_dcgm_server_on_every_monitored_nvidia_type_of_the_reference_and_no_other(
    helm, reference, tmp_path
):
    pod = dcgm_server(helm, run_stack_file(STACK_FILES[0], "dev"), tmp_path)
    catalog = reference_catalog(reference)
    admitted = {name for name, labels in catalog.items() if admits(pod["affinity"], labels)}
    expected = {name for name, labels in catalog.items() if monitored_nvidia(labels)}
    assert len(expected) > 50 and len(catalog) - len(expected) > 1000
    assert admitted == expected


def test_the_dcgm_server_lands_on_an_nvidia_type_the_charts_list_does_not_name(helm, reference, tmp_path):
    """Attribute pools pick up types AWS launches after the chart froze its list (v1.7.0 `values.yaml` names 77
    types; v1.6.1's lacked g7 and g7e). Every monitored NVIDIA type of the reference, under a name no list holds,
    must still get its DCGM server: the affinity may not depend on the type's name."""
    pod = dcgm_server(helm, run_stack_file(STACK_FILES[0], "dev"), tmp_path)
    catalog = reference_catalog(reference)
    for name, labels in catalog.items():
        if monitored_nvidia(labels):
            renamed = {**labels, INSTANCE_TYPE: f"{name.split('.')[0]}-next.{name.split('.')[1]}"}
            assert admits(pod["affinity"], renamed), name


def test_the_dcgm_server_tolerates_every_taint_a_gpu_node_can_carry(helm, tmp_path):
    """Not only the pools' taints: a user's own taint, Karpenter's disruption taint, a cordon. A node it cannot run on
    is repaired away (module docstring)."""
    pod = dcgm_server(helm, run_stack_file(STACK_FILES[0], "dev"), tmp_path)
    taints = [
        {"key": "example.com/team", "value": "research", "effect": "NoSchedule"},
        {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "example.com/evict", "value": "x", "effect": "NoExecute"},
    ]
    assert untolerated(taints, pod["tolerations"]) == []


# --- independent of the pools: adding, removing or changing a pool never rolls dcgm-server --------------------------


def test_the_committed_stacks_with_different_pools_get_byte_identical_configurations():
    """A change of the add-on's configuration changes the DaemonSet's pod template and rolls dcgm-server on every GPU
    node (README Node repair, "Upgrading the node monitoring add-on"), so no pool set may change it. Through the engine,
    as `pulumi up` sends it; node_monitoring_configuration() takes no stack input at all."""
    dev, pools = (run_stack_file(path, path.stem.removeprefix("Pulumi.")) for path in STACK_FILES)
    assert gpu_pool_taints(dev) != gpu_pool_taints(pools)  # different pool sets ...
    assert addon(dev).inputs["configurationValues"] == addon(pools).inputs["configurationValues"]  # ... same bytes
