"""The offline `render` command: summary, the three outputs, and exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, render_here


def run_render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.render", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def dev_render(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("render") / "dev"
    return run_render("--stack", "dev", "--out", str(out)), out


def test_dev_render_prints_a_summary_and_writes_three_outputs(dev_render):
    result, out = dev_render
    assert result.returncode == 0, result.stderr
    assert "nothing was contacted" in result.stdout and "placeholders" in result.stdout
    assert "aws:ec2/subnet:Subnet" in result.stdout
    resources = json.loads((out / "resources.json").read_text())
    total = int(result.stdout.split("total")[1].split()[0])
    assert total == len(resources)
    assert sum(r["type"] == "aws:ec2/subnet:Subnet" for r in resources) == 12
    assert (out / "kubernetes").is_dir() and (out / "helm").is_dir()


def test_dev_render_leaves_region_availability_to_the_preflight(dev_render):
    # The catalog has no per-region facts and render never calls AWS: it names the command that asks.
    result, _ = dev_render
    assert "  gpu-spot (class gpu; spot; at most 16 GPUs): 1 type: p5.48xlarge" in result.stdout
    assert "not known offline; ask AWS with `uv run python -m tools.preflight --stack dev`" in result.stdout


def test_resources_json_has_the_documented_shape_and_a_closed_graph(dev_render):
    _, out = dev_render
    resources = json.loads((out / "resources.json").read_text())
    urns = {r["urn"] for r in resources}
    for r in resources:
        assert (
            {"urn", "type", "name", "parent", "dependencies", "inputs"}
            <= set(r)
            <= {
                "urn",
                "type",
                "name",
                "parent",
                "dependencies",
                "inputs",
                "hooks",
                "customTimeouts",
                "replaceOnChanges",
                "deleteBeforeReplace",
            }
        )
        assert set(r["dependencies"]) <= urns, r["name"]
        assert r["parent"] == "" or r["parent"] in urns or r["parent"].endswith("pulumi:pulumi:Stack::eks-gpu-spot-dev")
    group = next(r for r in resources if r["type"] == "aws:eks/nodeGroup:NodeGroup")
    assert group["inputs"]["scalingConfig"]["minSize"] == 2  # numbers as the program wrote them, not 2.0
    hooked = [r for r in resources if "hooks" in r]
    assert [(r["type"], r["hooks"]) for r in hooked] == [
        ("random:index/randomId:RandomId", {"before_delete": ["cleanup-cluster-leftovers"]})
    ]


def test_us_east_1_leaves_use1_az3_out_of_the_control_plane_and_says_why(tmp_path):
    config = tmp_path / "Pulumi.east.yaml"
    config.write_text("config:\n  aws:region: us-east-1\n")
    out = tmp_path / "out"
    result = render_here("--config-file", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    resources = json.loads((out / "resources.json").read_text())
    subnets = [r for r in resources if r["type"] == "aws:ec2/subnet:Subnet"]
    assert len(subnets) == 6 + 6 + 5
    assert not any(s["inputs"]["availabilityZoneId"] == "use1-az3" for s in subnets if "-intra-" in s["name"])
    assert "left out of the control plane: use1-az3: EKS does not allow control-plane subnets" in result.stdout


# Errors found while the program runs under the engine (a pinned zone the region lacks, a region the offline engine
# does not know) run the real command: only a real process shows the exit without a traceback at teardown. The
# rest fail before the engine starts and run in this process (render_here).
IN_ENGINE = {"sa-east-1", "availabilityZones"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("config:\n  eks-gpu-spot:gpuCapacityTypes: [spotty]\n", ["gpuCapacityTypes", "spotty", "spot, on-demand"]),
        ("config:\n  eks-gpu-spot:gpuInstanceType: p5.48xlarge\n", ["gpuInstanceType", "did you mean"]),
        ("config:\n  eks-gpu-spot:vpcCidr: 10.0.0.0/24\n", ["vpcCidr", "too small"]),
        ("config: [1, 2\n", ["not a readable YAML file"]),
        ("- just\n- a list\n", ["expected a mapping"]),
        ("config:\n  aws:region: mars-north-1\n", ["aws:region", "not an AWS region"]),
        ("config:\n  aws:region: xx-east-9\n", ["aws:region", "not a region in the AWS partition data of botocore"]),
        ("config:\n  aws:region: cn-north-1\n", ["aws:region", "aws-cn partition", "refuses"]),
        ("config:\n  eks-gpu-spot:availabilityZones: [usw2-az1, use1-az2]\n", ["availabilityZones[1]", "usw2-az3"]),
        ("config:\n  eks-gpu-spot:clusterNamePrefix:\n    secure: AAAA\n", ["secret"]),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path, content, words):
    config = tmp_path / "Pulumi.bad.yaml"
    config.write_text(content)
    out = tmp_path / "out"
    render = run_render if any(case in content for case in IN_ENGINE) else render_here
    result = render("--config-file", str(config), "--out", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr
    assert not out.exists()


def test_missing_stack_file_is_one_clear_line(tmp_path):
    result = run_render("--stack", "nosuchstack", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Pulumi.nosuchstack.yaml: no such stack config file" in result.stderr
    assert "Traceback" not in result.stderr


def test_helm_folder_holds_every_release_with_repository_chart_and_version(dev_render):
    _, out = dev_render
    releases = {p.stem: yaml.safe_load(p.read_text()) for p in (out / "helm").glob("*.yaml")}
    # The dev stack's p5.48xlarge has EFA: the EFA device plugin runs on its nodes (infra/efa.py).
    expected = {"karpenter-crd", "karpenter", "aws-load-balancer-controller", "dcgm-exporter"}
    assert set(releases) == expected | {"aws-efa-k8s-device-plugin"}
    assert releases["karpenter"]["repository"] == "oci://public.ecr.aws/karpenter"
    assert releases["karpenter"]["chart"] == "karpenter" and releases["karpenter"]["skipCrds"] is True
    assert releases["karpenter-crd"]["chart"] == "karpenter-crd"
    assert releases["aws-load-balancer-controller"]["repository"] == "https://aws.github.io/eks-charts"
    assert releases["dcgm-exporter"]["repository"] == "https://nvidia.github.io/dcgm-exporter/helm-charts"
    assert all(r["namespace"] == "kube-system" and r["version"] for r in releases.values())


def test_dev_render_prints_and_writes_the_critical_path(dev_render):
    result, out = dev_render
    document = json.loads((out / "critical-path.json").read_text())
    assert set(document) == {"estimate_seconds", "path"} and document["estimate_seconds"] > 0
    assert [set(step) for step in document["path"]] == [{"urn", "type", "seconds"}] * len(document["path"])
    assert sum(step["seconds"] for step in document["path"]) == document["estimate_seconds"]
    minutes = f"{document['estimate_seconds'] / 60:.1f} min"
    assert f"Critical path of a first `pulumi up` (estimate): {minutes}" in result.stdout
    assert "eks:index:Cluster" in result.stdout.split("Critical path")[1]


def test_two_renders_of_one_stack_are_byte_identical(dev_render, tmp_path):
    """The engine's key and registration order vary from process to process; render writes them canonically, so a
    reviewer's diff of two renders shows only what changed. The module's render ran in another process."""
    _, first = dev_render
    second = tmp_path / "dev"
    assert render_here("--stack", "dev", "--out", str(second)).returncode == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert [f for f in files if (first / f).read_bytes() != (second / f).read_bytes()] == []
