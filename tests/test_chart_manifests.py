"""The Helm releases rendered by the real `helm template` (`render --chart-dir`): what the cluster would receive.

Needs helm ($HELM or PATH; `.ci/run` installs it) and the published archives in ../shared/reference/charts; the tests
that need them skip, saying why, when either is absent.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REFERENCE, render_here
from tests.test_render import run_render
from tools.charts import NOT_FOUND, find_helm, render_charts

CHARTS = REFERENCE / "charts"
ARCHIVES = (
    "karpenter-1.14.1.tgz",
    "karpenter-crd-1.14.1.tgz",
    "aws-load-balancer-controller-3.5.0.tgz",
    "dcgm-exporter-4.8.2.tgz",
)
KARPENTER_CRDS = {
    "nodepools.karpenter.sh",
    "nodeclaims.karpenter.sh",
    "nodeoverlays.karpenter.sh",
    "ec2nodeclasses.karpenter.k8s.aws",
    "capacitybuffers.autoscaling.x-k8s.io",
}
SYSTEM_NODE_LABEL = ("eks-gpu-spot/node-role", "system")
REGION = "us-west-2"  # Pulumi.dev.yaml


@pytest.fixture(scope="module")
def helm() -> str:
    found, why = find_helm()
    if found is None:
        pytest.skip(f"{why.removeprefix('charts: ').split(';')[0]}; bash .ci/run installs it")
    missing = [name for name in ARCHIVES if not (CHARTS / name).is_file()]
    if missing:
        pytest.skip(f"chart archives not found in {CHARTS}: {', '.join(missing)}")
    return found


@pytest.fixture(scope="module")
def rendered(helm, tmp_path_factory) -> Path:
    """`render --stack dev --chart-dir ../shared/reference/charts`, once for the module; the output folder."""
    out = tmp_path_factory.mktemp("charts") / "dev"
    result = run_render("--stack", "dev", "--out", str(out), "--chart-dir", str(CHARTS))
    assert result.returncode == 0, result.stderr
    assert "charts:" not in result.stderr, result.stderr
    return out


def manifests(out: Path, release: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((out / "charts" / f"{release}.yaml").read_text()) if doc]


def values(out: Path, release: str) -> dict[str, Any]:
    return yaml.safe_load((out / "helm" / f"{release}.yaml").read_text())["values"]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"{len(matches)} {kind} objects"
    return matches[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_every_release_is_rendered(rendered):
    releases = {path.stem for path in (rendered / "helm").glob("*.yaml")}
    # The EFA device plugin too: the dev pool's p5.48xlarge has EFA, and the plugin runs on every EFA type pools admit.
    expected = {
        "karpenter",
        "karpenter-crd",
        "aws-load-balancer-controller",
        "dcgm-exporter",
        "aws-efa-k8s-device-plugin",
    }
    assert releases == expected
    assert {path.stem for path in (rendered / "charts").glob("*.yaml")} == releases


def test_karpenter_controller_runs_the_digest_pinned_image_of_the_chart(rendered):
    image = container(only(manifests(rendered, "karpenter"), "Deployment"), "controller")["image"]
    assert re.fullmatch(r"public\.ecr\.aws/karpenter/controller:1\.14\.1@sha256:[0-9a-f]{64}", image), image


def test_karpenter_controller_gets_the_program_settings(rendered):
    deployment = only(manifests(rendered, "karpenter"), "Deployment")
    settings = values(rendered, "karpenter")["settings"]
    env = container(deployment, "controller")["env"]
    by_name = {e["name"]: e.get("value") for e in env}
    assert by_name["CLUSTER_NAME"] == settings["clusterName"]
    assert by_name["INTERRUPTION_QUEUE"] == settings["interruptionQueue"]
    assert [e.get("value") for e in env if e["name"] == "AWS_REGION"] == [REGION]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "karpenter"
    assert pod["nodeSelector"][SYSTEM_NODE_LABEL[0]] == SYSTEM_NODE_LABEL[1]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["namespace"] == "kube-system"


def test_crds_come_from_the_crd_release_only(rendered):
    crd_release = manifests(rendered, "karpenter-crd")
    assert {doc["kind"] for doc in crd_release} == {"CustomResourceDefinition"}
    names = {doc["metadata"]["name"] for doc in crd_release}
    assert names == KARPENTER_CRDS
    kinds = {doc["spec"]["names"]["kind"] for doc in crd_release}
    assert {"NodePool", "EC2NodeClass", "NodeClaim", "NodeOverlay"} <= kinds
    assert not [doc for doc in manifests(rendered, "karpenter") if doc["kind"] == "CustomResourceDefinition"]


def test_lb_controller_gets_cluster_region_and_vpc(rendered):
    program = values(rendered, "aws-load-balancer-controller")
    assert program["vpcId"].startswith("vpc-")
    deployment = only(manifests(rendered, "aws-load-balancer-controller"), "Deployment")
    args = container(deployment, "aws-load-balancer-controller")["args"]
    assert f"--cluster-name={program['clusterName']}" in args
    assert f"--aws-region={REGION}" in args
    assert f"--aws-vpc-id={program['vpcId']}" in args
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "aws-load-balancer-controller"
    assert pod["nodeSelector"][SYSTEM_NODE_LABEL[0]] == SYSTEM_NODE_LABEL[1]


def test_lb_controller_mutates_pods_but_not_services(rendered):
    """`enableServiceMutatorWebhook: false` drops the chart's `mservice` webhook; the pod readiness-gate one stays."""
    webhooks = only(manifests(rendered, "aws-load-balancer-controller"), "MutatingWebhookConfiguration")["webhooks"]
    by_name = {hook["name"]: hook for hook in webhooks}
    assert "mservice.elbv2.k8s.aws" not in by_name
    assert not [hook for hook in webhooks if hook["clientConfig"]["service"]["path"] == "/mutate-v1-service"]
    mutated = {resource for hook in webhooks for rule in hook["rules"] for resource in rule["resources"]}
    assert "services" not in mutated
    pod_hook = by_name["mpod.elbv2.k8s.aws"]
    assert pod_hook["clientConfig"]["service"]["path"] == "/mutate-v1-pod"
    assert [rule["resources"] for rule in pod_hook["rules"]] == [["pods"]]


def test_missing_archive_and_failing_helm_are_one_line_each(helm, rendered, tmp_path, capsys):
    """No archive: skipped with a line, exit 0 from that alone. helm failing on a present archive: its error, exit 1."""
    out = tmp_path / "out"
    shutil.copytree(rendered / "helm", out / "helm")
    charts = tmp_path / "charts"
    charts.mkdir()
    shutil.copy(CHARTS / "karpenter-crd-1.14.1.tgz", charts)
    shutil.copy(CHARTS / "dcgm-exporter-4.8.2.tgz", charts)
    shutil.copy(CHARTS / "aws-efa-k8s-device-plugin-v0.5.30.tgz", charts)
    (charts / "karpenter-1.14.1.tgz").write_bytes(b"not a chart archive")  # aws-load-balancer-controller: absent

    status = render_charts(out, charts, kube_version="1.33", helm=helm)

    lines = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(lines) == 2, lines
    assert "aws-load-balancer-controller-3.5.0.tgz not found" in lines[0]
    assert lines[1].startswith("charts: karpenter (karpenter-1.14.1.tgz): Error"), lines[1]
    rendered_charts = {path.name for path in (out / "charts").iterdir()}
    assert rendered_charts == {"karpenter-crd.yaml", "dcgm-exporter.yaml", "aws-efa-k8s-device-plugin.yaml"}

    (charts / "karpenter-1.14.1.tgz").unlink()
    assert render_charts(out, charts, kube_version="1.33", helm=helm) == 0  # missing archives alone do not fail
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_without_helm_render_says_so_in_one_line_and_succeeds(tmp_path, monkeypatch):
    no_helm = tmp_path / "bin"
    no_helm.mkdir()
    monkeypatch.setenv("HELM", str(tmp_path / "no-such-helm"))
    monkeypatch.setenv("PATH", str(no_helm))
    result = render_here("--stack", "dev", "--out", str(tmp_path / "out"), "--chart-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("charts:")]
    assert len(lines) == 1 and "helm not found" in lines[0] and "skipped chart rendering" in lines[0], result.stderr
    assert (tmp_path / "out" / "helm").is_dir() and not (tmp_path / "out" / "charts").exists()


def test_without_helm_on_path_the_message_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.delenv("HELM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_helm() == (None, NOT_FOUND)


def test_a_chart_dir_that_is_not_a_directory_is_an_argument_error(tmp_path):
    out = tmp_path / "out"
    result = run_render("--stack", "dev", "--out", str(out), "--chart-dir", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such directory" in result.stderr
    assert not out.exists()
