"""Node pools: EC2NodeClasses (Bottlerocket, SOCI, disks, RAID0) and NodePools (requirements, limits, disruption)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from infra.bottlerocket import (
    DATA_DEVICE,
    OS_DEVICE,
    SOCI_PARALLEL_PULL,
    SociTuning,
    bottlerocket_settings,
    nodeclass_settings_file,
)
from infra.config import StackConfig
from infra.gpu.pools import GPU_CLASS
from infra.node_pools import DEFAULT_CLASS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NODE_CLASSES = (DEFAULT_CLASS, GPU_CLASS)  # the default plan (no gpuPools)
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
COMPONENT = "eks-gpu-spot:index:NodePools"
RESERVED_TAG_KEYS = (
    "eks:eks-cluster-name",
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
)


def node_class(run, name):
    (found,) = [r for r in run.of_type(NODE_CLASS) if r.inputs["metadata"]["name"] == name]
    return found


def node_pool(run, name):
    (found,) = [r for r in run.of_type(NODE_POOL) if r.inputs["metadata"]["name"] == name]
    return found


def requirements(pool) -> dict[tuple[str, str], list[str]]:
    return {(r["key"], r["operator"]): r["values"] for r in pool.inputs["spec"]["template"]["spec"]["requirements"]}


def soci_settings_of(document: dict) -> dict:
    table = document["settings"]
    for key in SOCI_PARALLEL_PULL:
        table = table[key]
    return table


def soci_settings(user_data: str) -> dict:
    return soci_settings_of(tomllib.loads(user_data))


def data_volume(cls) -> dict:
    (data,) = [m["ebs"] for m in cls.inputs["spec"]["blockDeviceMappings"] if m["deviceName"] == DATA_DEVICE]
    return data


# --- node pools --------------------------------------------------------------------------------------------------


def test_both_pools_and_classes_exist_and_reference_each_other(stack):
    pools = {r.inputs["metadata"]["name"]: r for r in stack.of_type(NODE_POOL)}
    classes = {r.inputs["metadata"]["name"] for r in stack.of_type(NODE_CLASS)}
    assert set(pools) == {"default", "gpu-spot"}
    assert classes == {"default", "gpu"}
    refs = {name: p.inputs["spec"]["template"]["spec"]["nodeClassRef"] for name, p in pools.items()}
    assert refs["default"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
    assert refs["gpu-spot"]["name"] == "gpu"


def test_gpu_pool_requirements_follow_config(render):
    run = render(gpuInstanceTypes="p5.48xlarge,p4d.24xlarge,g6e.12xlarge", gpuCapacityTypes="spot,on-demand")
    reqs = requirements(node_pool(run, "gpu-spot"))
    assert reqs[("node.kubernetes.io/instance-type", "In")] == ["p5.48xlarge", "p4d.24xlarge", "g6e.12xlarge"]
    assert reqs[("karpenter.sh/capacity-type", "In")] == ["spot", "on-demand"]
    assert reqs[("kubernetes.io/arch", "In")] == ["amd64"]


def test_gpu_pool_defaults_to_p5_on_spot_only(stack):
    reqs = requirements(node_pool(stack, "gpu-spot"))
    assert reqs[("node.kubernetes.io/instance-type", "In")] == ["p5.48xlarge"]
    assert reqs[("karpenter.sh/capacity-type", "In")] == ["spot"]


def test_gpu_pool_is_tainted_and_limited_in_gpus(render):
    spec = node_pool(render(gpuLimit="48"), "gpu-spot").inputs["spec"]
    assert spec["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert spec["limits"] == {"nvidia.com/gpu": 48}


def test_gpu_pool_never_voluntarily_disrupts_busy_nodes(render):
    spec = node_pool(render(gpuConsolidateAfter="30m"), "gpu-spot").inputs["spec"]
    disruption = spec["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmpty"
    assert disruption["consolidateAfter"] == "30m"
    budgets = {reason: b["nodes"] for b in disruption["budgets"] for reason in b["reasons"]}
    assert budgets["Underutilized"] == "0" and budgets["Drifted"] == "0"
    assert budgets["Empty"] not in ("0", "0%")  # idle GPU nodes must still go away
    # Expiry is forceful (it ignores budgets): a GPU job must never be cut by it.
    assert spec["template"]["spec"]["expireAfter"] == "Never"
    assert "expireAfter" not in spec  # the v1beta1 location, which v1 would reject


def test_default_pool_shape_limits_and_consolidation(render):
    pool = node_pool(render(defaultPoolCpuLimit="200", defaultPoolMemoryLimit="800"), "default")
    reqs = requirements(pool)
    spec = pool.inputs["spec"]
    assert reqs[("karpenter.k8s.aws/instance-category", "In")] == ["c", "m", "r"]
    # Gt/Lt are exclusive: 4 to 32 vCPU.
    assert reqs[("karpenter.k8s.aws/instance-cpu", "Gt")] == ["3"]
    assert reqs[("karpenter.k8s.aws/instance-cpu", "Lt")] == ["33"]
    assert reqs[("kubernetes.io/arch", "In")] == ["amd64"]
    assert sorted(reqs[("karpenter.sh/capacity-type", "In")]) == ["on-demand", "spot"]
    assert spec["limits"] == {"cpu": 200, "memory": "800Gi"}
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert spec["disruption"]["consolidateAfter"]
    assert "taints" not in spec["template"]["spec"]


def test_pools_and_classes_depend_on_both_karpenter_releases(stack):
    crd_release, controller = stack.one(HELM_RELEASE, "karpenter-crd"), stack.one(HELM_RELEASE, "karpenter")
    objects = stack.of_type(NODE_POOL) + stack.of_type(NODE_CLASS)
    assert len(objects) == 4
    for obj in objects:
        assert stack.depends_on(obj, crd_release), obj.name
        assert stack.depends_on(obj, controller), obj.name
        assert obj.parent == stack.one(COMPONENT).urn


def test_pools_wait_for_their_node_class(stack):
    assert stack.depends_on(node_pool(stack, "gpu-spot"), node_class(stack, "gpu"))
    assert stack.depends_on(node_pool(stack, "default"), node_class(stack, "default"))


def test_no_nvidia_device_plugin_is_deployed(stack):
    # Bottlerocket's NVIDIA variants ship the device plugin; a second one would fight it for the GPUs.
    assert not [r for r in stack.registrations if r.type.endswith(":DaemonSet")]
    everything = json.dumps([r.as_json() for r in stack.registrations]).lower()
    # The EFA device plugin (infra/efa.py; the dev stack's p5.48xlarge has EFA) is the only device plugin there is.
    everything = everything.replace("aws-efa-k8s-device-plugin", "")
    assert "nvidia-device-plugin" not in everything
    assert "k8s-device-plugin" not in everything


# --- node classes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NODE_CLASSES)
def test_node_class_is_pinned_bottlerocket_with_discovery_and_imdsv2(render, name):
    run = render(bottlerocketVersion="1.56.0")
    spec = node_class(run, name).inputs["spec"]
    cluster_name = run.outputs["cluster_name"]
    assert spec["amiSelectorTerms"] == [{"alias": "bottlerocket@v1.56.0"}]
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": cluster_name}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": cluster_name}}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert "instanceProfile" not in spec and "amiFamily" not in spec


def test_node_classes_use_the_karpenter_node_role(stack):
    (node_role,) = [
        r
        for r in stack.of_type("aws:iam/role:Role")
        if r.parent == stack.one("eks-gpu-spot:index:Karpenter").urn
        and "ec2.amazonaws.com" in r.inputs["assumeRolePolicy"]
    ]
    # The offline engine names a role without an explicit name after its resource, as AWS autonaming would.
    expected = node_role.inputs.get("name", node_role.name)
    for name in NODE_CLASSES:
        spec = node_class(stack, name).inputs["spec"]
        assert spec["role"] == expected
        assert stack.depends_on(node_class(stack, name), node_role)


@pytest.mark.parametrize("name", NODE_CLASSES)
def test_node_class_lists_encrypted_gp3_os_and_data_volumes(stack, name):
    mappings = node_class(stack, name).inputs["spec"]["blockDeviceMappings"]
    assert [m["deviceName"] for m in mappings] == [OS_DEVICE, DATA_DEVICE]
    for mapping in mappings:
        assert mapping["ebs"]["volumeType"] == "gp3"
        assert mapping["ebs"]["encrypted"] is True


def test_gpu_data_volume_is_sized_from_config_and_fast(render):
    data = data_volume(node_class(render(gpuDataVolumeSize="500"), "gpu"))
    assert data["volumeSize"] == "500Gi"
    # 14 GB images written twice (compressed, unpacked) in ~35 s need far more than gp3's 125 MiB/s baseline.
    assert data["throughput"] >= 500
    assert data["iops"] >= data["throughput"] * 4  # gp3 allows at most 0.25 MiB/s per provisioned IOPS


def test_image_cache_snapshot_is_off_by_default(stack):
    data = data_volume(node_class(stack, "gpu"))
    assert "snapshotID" not in data and "volumeInitializationRate" not in data


def test_image_cache_snapshot_seeds_the_gpu_data_volume_only(render):
    run = render(gpuImageCacheSnapshotId="snap-0123456789abcdef0")
    data = data_volume(node_class(run, "gpu"))
    assert data["snapshotID"] == "snap-0123456789abcdef0"
    assert 100 <= data["volumeInitializationRate"] <= 300  # the CRD's range, MiB/s
    assert "snapshotID" not in data_volume(node_class(run, "default"))


def test_image_cache_snapshot_turns_raid0_off_on_the_gpu_class(render):
    # RAID0 binds /var/lib/containerd and /var/lib/soci-snapshotter onto the fresh NVMe array before containerd
    # starts, hiding every image the snapshot put on the data volume: the two exclude each other.
    run = render(gpuImageCacheSnapshotId="snap-0123456789abcdef0")
    assert "instanceStorePolicy" not in node_class(run, "gpu").inputs["spec"]
    assert node_class(run, "default").inputs["spec"]["instanceStorePolicy"] == "RAID0"


@pytest.mark.parametrize("name", NODE_CLASSES)
def test_raid0_instance_store_without_hand_written_bootstrap(stack, name):
    spec = node_class(stack, name).inputs["spec"]
    assert spec["instanceStorePolicy"] == "RAID0"
    settings = tomllib.loads(spec["userData"])["settings"]
    # Karpenter writes the ephemeral-storage bootstrap itself for RAID0; hand-written copies would conflict.
    assert "bootstrap-commands" not in settings
    assert "ephemeral-storage" not in settings.get("kubernetes", {})


def test_node_class_tags_identify_the_stack_without_reserved_keys(stack):
    for name in NODE_CLASSES:
        tags = node_class(stack, name).inputs["spec"]["tags"]
        assert tags["eks-gpu-spot/stack"] == "dev"
        assert tags["eks-gpu-spot/cluster"] == stack.outputs["cluster_name"]
        assert not [k for k in tags if k in RESERVED_TAG_KEYS or k.startswith("kubernetes.io/cluster")]


# --- Bottlerocket user data --------------------------------------------------------------------------------------


def test_user_data_enables_soci_parallel_pull_with_tuned_values(stack):
    expected = {
        "default": {
            "max-concurrent-downloads-per-image": 10,
            "concurrent-download-chunk-size": "16mb",
            "max-concurrent-unpacks-per-image": 10,
            "discard-unpacked-layers": True,
        },
        "gpu": {
            "max-concurrent-downloads-per-image": 30,
            "concurrent-download-chunk-size": "32mb",
            "max-concurrent-unpacks-per-image": 30,
            "discard-unpacked-layers": True,
        },
    }
    for name, tuned in expected.items():
        user_data = node_class(stack, name).inputs["spec"]["userData"]
        settings = tomllib.loads(user_data)["settings"]
        assert settings["container-runtime"]["snapshotter"] == "soci"
        assert settings["container-runtime-plugins"]["soci-snapshotter"]["pull-mode"] == "parallel-pull-unpack"
        assert soci_settings(user_data) == tuned


def test_config_overrides_the_soci_tuning(render):
    run = render(
        sociGpuDownloadsPerImage="64",
        sociGpuChunkSize="64mb",
        sociGpuUnpacksPerImage="12",
        sociGpuDiscardUnpackedLayers="false",
        sociDefaultChunkSize="unlimited",
    )
    assert soci_settings(node_class(run, "gpu").inputs["spec"]["userData"]) == {
        "max-concurrent-downloads-per-image": 64,
        "concurrent-download-chunk-size": "64mb",
        "max-concurrent-unpacks-per-image": 12,
        "discard-unpacked-layers": False,
    }
    default = soci_settings(node_class(run, "default").inputs["spec"]["userData"])
    assert default["concurrent-download-chunk-size"] == "unlimited"
    assert default["max-concurrent-downloads-per-image"] == 10


@pytest.mark.parametrize("name", NODE_CLASSES)
def test_toml_files_hold_the_config_defaults(name):
    in_file = soci_settings(nodeclass_settings_file(name).read_text(encoding="utf-8"))
    assert in_file == SociTuning.from_config(StackConfig(), name).as_settings()


def test_overlay_keeps_everything_else_in_the_toml_file():
    tuning = SociTuning(downloads_per_image=7, chunk_size="8mb", unpacks_per_image=2, discard_unpacked_layers=False)
    file_settings = tomllib.loads(nodeclass_settings_file(GPU_CLASS).read_text(encoding="utf-8"))
    merged = bottlerocket_settings(GPU_CLASS, tuning)
    assert merged["settings"]["container-runtime"] == file_settings["settings"]["container-runtime"]
    assert soci_settings_of(merged)["max-concurrent-downloads-per-image"] == 7
    assert soci_settings_of(file_settings)["max-concurrent-downloads-per-image"] == 30


def test_soci_keys_are_the_ones_bottlerocket_documents(reference):
    documented = set()
    for path in (reference / "bottlerocket" / "settings").glob("*-container-runtime-plugins.toml"):
        for entry in tomllib.loads(path.read_text(encoding="utf-8"))["docs"]["ref"].values():
            for item in entry if isinstance(entry, list) else [entry]:
                documented.add(item.get("name_override", ""))
    for name in NODE_CLASSES:
        for key in SociTuning.from_config(StackConfig(), name).as_settings():
            assert f"soci-snapshotter.parallel-pull-unpack.{key}" in documented
    assert "soci-snapshotter.pull-mode" in documented


# --- examples ----------------------------------------------------------------------------------------------------


def example(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text(encoding="utf-8")) if doc]


def pod_spec(documents: list[dict]) -> dict:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def test_inflate_example_targets_the_default_pool_and_starts_at_zero():
    (deployment,) = example("inflate.yaml")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 0
    assert spec["nodeSelector"] == {"karpenter.sh/nodepool": "default"}
    assert "pause" in spec["containers"][0]["image"]
    assert spec["containers"][0]["resources"]["requests"]["cpu"]


def test_vllm_example_lands_on_the_gpu_pool(stack):
    spec = pod_spec(example("vllm-gpu.yaml"))
    taint = node_pool(stack, "gpu-spot").inputs["spec"]["template"]["spec"]["taints"][0]
    assert spec["nodeSelector"] == {"karpenter.sh/nodepool": "gpu-spot"}
    toleration = {"key": taint["key"], "operator": "Equal", "value": taint["value"], "effect": taint["effect"]}
    assert toleration in spec["tolerations"]
    (container,) = spec["containers"]
    assert int(container["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
