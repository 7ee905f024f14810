"""GPU utilization (README "GPU utilization"): dcgm-exporter in remote mode on the node monitoring agent's engine, its
series scraped into CloudWatch with the pool labels, the panels and the idle-GPU alarm, all removed by the switch."""

from __future__ import annotations

import json
import re
import tarfile

import pytest
import yaml

from infra.cloudwatch.dashboard import DOCUMENTED_METRICS, dashboard_body
from infra.cloudwatch.dcgm_exporter import (
    DECLARED,
    EXPORTER,
    METRIC_NAMESPACE,
    NODE_LABEL_DIMENSIONS,
    agent_config,
    metric_count,
    monthly_cost_usd,
    scrape_config,
    scraping_agents,
)
from infra.karpenter import INTERRUPTION_EVENTS
from tests.conftest import render_stack

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
ALARM_TYPE = "aws:cloudwatch/metricAlarm:MetricAlarm"
ADDON = "aws:eks/addon:Addon"
ARCHIVE = "dcgm-exporter-4.8.2.tgz"


def chart_counters(reference) -> set[str]:
    """DCGM fields the pinned chart's counters file (its ConfigMap, mounted where `-f` points) exports."""
    with tarfile.open(reference / "charts" / ARCHIVE) as archive:
        text = archive.extractfile("dcgm-exporter/templates/metrics-configmap.yaml").read().decode()
    default = text.split("{{- else }}", 1)[1]  # the chart's own list, used when customMetrics is unset
    return {m.group(1) for m in re.finditer(r"^\s*(DCGM_FI_\w+)\s*,", default, re.MULTILINE)}


def exporter_release(run):
    return run.one(RELEASE_TYPE, "observability-dcgm-exporter")


def test_every_metric_on_the_dashboard_is_a_field_of_the_charts_counters_file(reference):
    exported = chart_counters(reference)
    assert "DCGM_FI_DEV_GPU_UTIL" in exported and "DCGM_FI_DEV_SM_CLOCK" in exported  # the parse found the list
    assert not {"DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_DEV_POWER_VIOLATION"} & exported  # commented out in the chart
    body = json.dumps(dashboard_body("us-west-2", "c", "q", {e: e for e in INTERRUPTION_EVENTS}))
    drawn = set(re.findall(r"MetricName=\\\"(DCGM_FI_\w+)", body))
    assert drawn == set(DECLARED), drawn
    assert drawn <= exported, drawn - exported


def test_the_release_is_pinned_and_runs_on_the_agents_engine(stack):
    release = exporter_release(stack).inputs
    assert (release["chart"], release["version"]) == ("dcgm-exporter", "4.8.2")
    assert release["repositoryOpts"]["repo"] == "https://nvidia.github.io/dcgm-exporter/helm-charts"
    values = release["values"]
    assert values["image"]["tag"] == "4.5.3-4.8.2-distroless"
    arguments = values["arguments"]
    assert arguments[arguments.index("-r") + 1] == "localhost:5555" and values["hostNetwork"] is True
    assert "nvidia.com/gpu" not in json.dumps(values["resources"])


def test_the_addon_adds_one_scraping_agent_and_keeps_the_charts_two():
    agents = scraping_agents("alpha", {"role": "system"})
    assert [a["name"] for a in agents] == [
        "cloudwatch-agent",
        "cloudwatch-agent-cluster-scraper",
        "cloudwatch-agent-dcgm",
    ]
    scraper = agents[-1]
    assert scraper["mode"] == "deployment" and scraper["replicas"] == 1
    assert scraper["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "system"}
    prometheus = scraper["config"]["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["cluster_name"] == "alpha"
    (declaration,) = prometheus["emf_processor"]["metric_declaration"]
    assert prometheus["emf_processor"]["metric_namespace"] == METRIC_NAMESPACE
    assert sorted(map(sorted, declaration["dimensions"])) == sorted(map(sorted, next(iter(DECLARED.values()))))


def test_the_scrape_carries_every_declared_dimension_and_keeps_only_declared_fields():
    (job,) = scrape_config()["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["attach_metadata"] == {"node": True}
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    declared = {d for sets in DECLARED.values() for s in sets for d in s} - {"ClusterName"}  # the agent adds it
    assert declared <= targets, declared - targets
    sources = {s for r in job["relabel_configs"] for s in r["source_labels"]}
    assert "__meta_kubernetes_node_label_karpenter_sh_nodepool" in sources
    assert set(NODE_LABEL_DIMENSIONS) <= targets
    (keep,) = job["metric_relabel_configs"]
    assert set(keep["regex"].split("|")) == set(DECLARED)
    selectors = agent_config("c")["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    assert {s.strip("^$") for s in selectors[0]["metric_selectors"]} == set(DECLARED)


def test_one_idle_alarm_per_pool_on_a_declared_metric():
    run = render_stack(
        gpuPools=json.dumps([{"name": "train", "gpuNames": ["l4"]}, {"name": "serve", "gpuNames": ["a10g"]}])
    )
    alarms = {r.name: r.inputs for r in run.of_type(ALARM_TYPE) if r.name.endswith("-gpus-idle")}
    assert set(alarms) == {"observability-train-gpus-idle", "observability-serve-gpus-idle"}
    alarm = alarms["observability-train-gpus-idle"]
    assert alarm["dimensions"] == {"ClusterName": run.outputs["cluster_name"], "NodePool": "train"}
    assert sorted(alarm["dimensions"]) in [
        sorted(d) for d in DOCUMENTED_METRICS[alarm["namespace"]]["metrics"][alarm["metricName"]]
    ]
    assert alarm["comparisonOperator"] == "LessThanThreshold" and alarm["treatMissingData"] == "notBreaching"
    assert 0 < alarm["threshold"] < 1 and alarm["period"] * alarm["evaluationPeriods"] == 3600


def test_cloudwatchs_api_model_accepts_the_idle_alarm(monkeypatch):
    import boto3
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    (alarm,) = [r.inputs for r in render_stack().of_type(ALARM_TYPE) if r.name.endswith("-gpus-idle")]
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-west-2")
        cloudwatch.put_metric_alarm(
            AlarmName="idle",
            AlarmDescription=alarm["alarmDescription"],
            Namespace=alarm["namespace"],
            MetricName=alarm["metricName"],
            Dimensions=[{"Name": k, "Value": v} for k, v in alarm["dimensions"].items()],
            Statistic=alarm["statistic"],
            Period=alarm["period"],
            EvaluationPeriods=alarm["evaluationPeriods"],
            Threshold=alarm["threshold"],
            ComparisonOperator=alarm["comparisonOperator"],
            TreatMissingData=alarm["treatMissingData"],
        )
        (stored,) = cloudwatch.describe_alarms(AlarmNames=["idle"])["MetricAlarms"]
        assert stored["Namespace"] == METRIC_NAMESPACE


def test_the_addon_configuration_carries_the_stacks_cluster_name(stack):
    (addon,) = [r for r in stack.of_type(ADDON) if r.inputs["addonName"] == "amazon-cloudwatch-observability"]
    agents = json.loads(addon.inputs["configurationValues"])["agents"]
    assert (
        agents[-1]["config"]["logs"]["metrics_collected"]["prometheus"]["cluster_name"]
        == (stack.outputs["cluster_name"])
    )


def test_the_switch_removes_the_exporter_and_the_idle_alarms():
    off = render_stack(observability="false")
    assert not [r for r in off.of_type(RELEASE_TYPE) if r.name == "observability-dcgm-exporter"]
    assert not [r for r in off.of_type(ALARM_TYPE) if r.name.endswith("-gpus-idle")]


@pytest.mark.parametrize(
    ("nodes", "expected_metrics"), [(10, 4 * (10 + 3 + 2 * 2 + 2)), (100, 4 * (100 + 3 + 2 * 2 + 2))]
)
def test_metrics_grow_with_nodes_only_through_the_per_node_set(nodes, expected_metrics):
    assert metric_count(nodes, instance_types=3, pools=2) == expected_metrics


def test_cost_at_100_nodes_is_bounded_by_its_parts():
    small, large = monthly_cost_usd(10, 1, 3, 2), monthly_cost_usd(100, 1, 3, 2)
    assert 0 < small < large < 10 * small + 1
    assert large >= metric_count(100, 3, 2) * 0.3


def test_helm_template_of_the_real_chart(reference, tmp_path):
    """The pinned chart renders with these values: remote mode, no embedded engine, host network, every taint
    tolerated, the NVIDIA-node rule, the pod-resources socket, and no ServiceMonitor (no such CRD here)."""
    import subprocess

    from tools.charts import find_helm

    helm, why = find_helm()
    if helm is None:
        pytest.skip(why)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(exporter_release(render_stack()).inputs["values"]))
    result = subprocess.run(
        [
            helm,
            "template",
            "dcgm-exporter",
            str(reference / "charts" / ARCHIVE),
            "-n",
            EXPORTER["namespace"],
            "-f",
            str(values),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "ServiceMonitor" not in {d["kind"] for d in docs}
    (daemonset,) = [d for d in docs if d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["tolerations"] == [{"operator": "Exists"}]
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    rules = {e["key"]: (e["operator"], e["values"]) for e in term["matchExpressions"]}
    assert rules["karpenter.k8s.aws/instance-gpu-manufacturer"] == ("In", ["nvidia"])
    (container,) = spec["containers"]
    assert container["args"][container["args"].index("-r") + 1] == "localhost:5555"
    assert container["image"].endswith(":4.5.3-4.8.2-distroless")
    assert "nvidia.com/gpu" not in json.dumps(container.get("resources", {}))
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/var/lib/kubelet/pod-resources" in mounts
