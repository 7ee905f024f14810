"""Observability (README "Observability"): the CloudWatch add-on with its identity, one DCGM per GPU node, the
dashboard over documented metrics with the stack's own names, the queue alarm below the queue's retention, and the
`observability` switch that removes all of it."""

from __future__ import annotations

import json
import re

import botocore.session
import pytest

from infra.catalog.data import load_data
from infra.cloudwatch.addon import ADDON_NAME, observability_configuration
from infra.cloudwatch.dashboard import ALARM, DASHBOARD, DOCUMENTED_METRICS, dashboard_body
from infra.karpenter import INTERRUPTION_EVENTS, QUEUE_RETENTION_SECONDS
from tests.conftest import PROJECT_ROOT, config_error, parse, render_here, render_stack, run_stack_file

ADDON = "aws:eks/addon:Addon"
DASHBOARD_TYPE = "aws:cloudwatch/dashboard:Dashboard"
ALARM_TYPE = "aws:cloudwatch/metricAlarm:MetricAlarm"
OBSERVABILITY_TYPES = (DASHBOARD_TYPE, ALARM_TYPE, "eks-gpu-spot:index:Observability")
QUEUE_ALARM = "observability-interruption-queue-stale"


def cloudwatch_addon(run):
    (found,) = [r for r in run.of_type(ADDON) if r.inputs["addonName"] == ADDON_NAME]
    return found


def registered_body(run) -> dict:
    return json.loads(run.one(DASHBOARD_TYPE).inputs["dashboardBody"])


def test_the_addon_is_pinned_and_configured_with_one_dcgm_per_gpu_node(stack):
    addon = cloudwatch_addon(stack)
    assert addon.inputs["addonVersion"] == "v6.6.0-eksbuild.1"
    configuration = json.loads(addon.inputs["configurationValues"])
    # The mode the dashboard reads, whatever the pinned build defaults to.
    assert configuration["containerInsights"] == {"enabled": True}
    assert configuration["otelContainerInsights"] == {"enabled": False}
    # The node monitoring agent's dcgm-server is the node's one host engine; the add-on must not start another.
    assert configuration["dcgmExporter"] == {"enabled": False}
    nma = [r for r in stack.of_type(ADDON) if r.inputs["addonName"] == "eks-node-monitoring-agent"]
    assert nma, "node repair's agent (and its DCGM server) is always installed"
    # Costly or pod-changing defaults off; container logs follow their key.
    assert configuration["applicationSignals"] == {"enabled": False}
    assert configuration["manager"]["applicationSignals"]["autoMonitor"]["monitorAllServices"] is False
    assert configuration["containerLogs"] == {"enabled": False}


def test_the_addon_keeps_the_charts_tolerate_everything_default():
    """The chart's root `tolerations: [{operator: Exists}]` reaches every tainted GPU node; no value narrows it."""

    def keys(value, path=()):
        if isinstance(value, dict):
            for k, v in value.items():
                yield (*path, k)
                yield from keys(v, (*path, k))

    for logs in ("false", "true"):
        configuration = observability_configuration(parse(observabilityContainerLogs=logs), "c")
        assert not [k for k in keys(configuration) if "tolerations" in k or "nodeSelector" in k or "affinity" in k]


def test_container_logs_key_turns_fluent_bit_on():
    assert observability_configuration(parse(observabilityContainerLogs="true"), "c")["containerLogs"] == {
        "enabled": True
    }


def test_the_agent_identity_is_pod_identity_with_the_cloudwatch_agent_policy(stack):
    addon = cloudwatch_addon(stack)
    (association,) = addon.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == "cloudwatch-agent"
    role = stack.one("aws:iam/role:Role", "observability-agent")
    assert association["roleArn"].endswith(":role/observability-agent")  # the offline engine's ARN of that role
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(statement["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    attachment = stack.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "observability-agent")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
    assert stack.depends_on(addon, attachment)
    # Credentials come from the Pod Identity agent; the operator runs on the system nodes.
    assert stack.depends_on(addon, stack.one(ADDON, "cluster-eks-pod-identity-agent"))
    assert stack.depends_on(addon, stack.one("aws:eks/nodeGroup:NodeGroup"))


def _metric_references(body: dict):
    """(namespace, metric, dimension names, {dimension: value}) of every metric a widget draws."""
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # a SEARCH expression
                expression = row[0]["expression"]
                query = expression.split("'")[1]
                metric = query.split('MetricName="')[1].split('"')[0]
                cluster = query.split('ClusterName="')[1].split('"')[0]
                if query.startswith("{"):
                    namespace, *dimensions = query[1 : query.index("}")].split(",")
                else:
                    namespace, dimensions = query.split('Namespace="')[1].split('"')[0], ["ClusterName"]
                yield namespace, metric, tuple(dimensions), {"ClusterName": cluster}
            else:
                namespace, metric, *pairs = row[:-1]
                values = dict(zip(pairs[::2], pairs[1::2], strict=True))
                yield namespace, metric, tuple(values), values


def test_every_widget_names_a_documented_metric_with_the_stacks_own_dimensions(stack):
    body = registered_body(stack)
    own = {
        "ClusterName": {stack.outputs["cluster_name"]},
        "QueueName": {stack.outputs["karpenter_interruption_queue"]},
        # Rules are auto-named; offline, a resource's name is its Pulumi name.
        "RuleName": {r.name for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")},
    }
    references = list(_metric_references(body))
    assert len(references) >= len(DASHBOARD["widgets"])
    for namespace, metric, dimensions, values in references:
        documented = DOCUMENTED_METRICS[namespace]["metrics"]
        assert metric in documented, (namespace, metric)
        assert sorted(dimensions) in [sorted(d) for d in documented[metric]], (metric, dimensions)
        for dimension, value in values.items():
            assert value in own[dimension], (metric, dimension, value)
    drawn = {(n, m) for n, m, _, _ in references}
    # The four questions: GPU use, Spot interruptions and rebalances, the queue, pending pods.
    assert ("ContainerInsights", "node_gpu_reserved_capacity") in drawn
    assert ("AWS/Events", "TriggeredRules") in drawn
    assert {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/SQS", "ApproximateAgeOfOldestMessage")} <= drawn
    assert {("AWS/EKS", "scheduler_pending_pods"), ("AWS/EKS", "scheduler_pending_pods_UNSCHEDULABLE")} <= drawn


# aws-cdk-lib's canned metrics, generated from AWS's published metric metadata (../shared/reference/README.md):
# `namespace:"AWS/EKS",metricName:"scheduler_pending_pods",dimensionsMap:dimensions,statistic:"Sum"`.
CANNED = re.compile(r'namespace:"([^"]+)",metricName:"([^"]+)",dimensionsMap:dimensions,statistic:"([^"]+)"')


def _published_metrics(reference) -> dict[tuple[str, str], str]:
    """(namespace, metric) -> the statistic AWS's metadata gives it, over every generated file."""
    published: dict[tuple[str, str], str] = {}
    for path in sorted((reference / "cloudwatch-metrics").glob("*-canned-metrics.generated.js")):
        for namespace, metric, statistic in CANNED.findall(path.read_text()):
            published.setdefault((namespace, metric), statistic)
    return published


def _statistics_drawn(body: dict):
    """(namespace, metric, statistic, spec) of every AWS/* metric row a widget or the alarm names."""
    for widget in DASHBOARD["widgets"]:
        for spec in [*widget.get("metrics", []), *(s for s in (widget.get("search"), widget.get("also_search")) if s)]:
            yield spec["namespace"], spec["metric"], spec["stat"], spec
    alarm = ALARM["metric"]
    yield alarm["namespace"], alarm["metric"], alarm["stat"], alarm


def test_every_aws_metric_on_the_dashboard_and_the_alarm_is_one_aws_publishes(stack, reference):
    """Held against metadata AWS generates, not the project's own list: the pending-pods panel once drew
    `AWS/EKS PendingPods`, a name AWS/EKS never publishes (it publishes scheduler_pending_pods, with ClusterName)."""
    published = _published_metrics(reference)
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in published  # the pattern still reads the files
    statistics = set(botocore.session.get_session().get_service_model("cloudwatch").shape_for("Statistic").enum)
    body = registered_body(stack)
    names = [(n, m) for n, m, _, _ in _metric_references(body) if n.startswith("AWS/")]
    alarms = [alarm.inputs for alarm in stack.of_type(ALARM_TYPE)]
    names += [(a["namespace"], a["metricName"]) for a in alarms if a["namespace"].startswith("AWS/")]
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in names  # the queue alarm is among them
    assert [name for name in names if name not in published] == []
    assert {n for n, _ in names} == {"AWS/Events", "AWS/SQS", "AWS/EKS"}
    for namespace, metric, statistic, spec in _statistics_drawn(body):
        if not namespace.startswith("AWS/"):
            continue
        assert statistic in statistics, (metric, statistic)
        # Another statistic than AWS's own for the metric says why, with its source.
        assert statistic == published[(namespace, metric)] or spec.get("stat_source"), (metric, statistic)


def test_interruption_and_rebalance_widgets_count_those_two_rules_per_hour():
    rules = {event: f"rule-{event}" for event in INTERRUPTION_EVENTS}
    body = dashboard_body("us-west-2", "c", "q", rules)
    [widget] = [w for w in body["widgets"] if "TriggeredRules" in json.dumps(w)]
    properties = widget["properties"]
    assert properties["period"] == 3600
    counted = {row[3] for row in properties["metrics"] if row[1] == "TriggeredRules"}
    assert counted == {"rule-spot-interruption", "rule-rebalance"}


def test_dashboard_body_changes_with_the_stack_names():
    """Not a constant: every name comes from the arguments."""
    rules = {event: f"r-{event}" for event in INTERRUPTION_EVENTS}
    one = json.dumps(dashboard_body("us-west-2", "alpha", "qa", rules))
    two = json.dumps(dashboard_body("eu-west-1", "beta", "qb", rules))
    assert "alpha" in one and "beta" not in one and '"qa"' in one
    assert "beta" in two and '"eu-west-1"' in two and "us-west-2" not in two


def test_alarm_fires_before_the_queue_drops_the_message(stack):
    alarm = stack.one(ALARM_TYPE, QUEUE_ALARM).inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["dimensions"] == {"QueueName": stack.outputs["karpenter_interruption_queue"]}
    assert alarm["statistic"] == "Maximum"
    # A message's age never exceeds the retention: the threshold plus one period must fit below it.
    assert alarm["threshold"] + alarm["period"] <= QUEUE_RETENTION_SECONDS
    assert alarm["threshold"] == ALARM["threshold_seconds"]
    assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["treatMissingData"] == "notBreaching"


def test_dashboard_url_is_a_stack_output(stack):
    url = stack.outputs["dashboard_url"]
    assert url.startswith("https://us-west-2.console.aws.amazon.com/cloudwatch/home?region=us-west-2#dashboards/")
    assert url.endswith(f"/{stack.outputs['cluster_name']}-gpu")


def test_the_switch_removes_all_of_it():
    on, off = render_stack(), render_stack(observability="false")
    for type_ in OBSERVABILITY_TYPES:
        assert on.of_type(type_) and not off.of_type(type_), type_
    assert not [r for r in off.of_type(ADDON) if r.inputs["addonName"] == ADDON_NAME]
    assert not [r for r in off.registrations if r.name.startswith("observability")]
    assert off.outputs["dashboard_url"] is None
    # Everything else is untouched.
    rest = {r.urn for r in on.registrations if not r.name.startswith("observability")}
    assert rest == {r.urn for r in off.registrations}


def test_the_critical_path_does_not_grow():
    from tools.render import stack_critical_path

    on, off = stack_critical_path(render_stack()), stack_critical_path(render_stack(observability="false"))
    assert on.estimate_seconds == off.estimate_seconds
    assert not [step for step in on.path if "observability" in step.urn]


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        ({"observability": "maybe"}, "observability", "maybe"),
        ({"observabilityContainerLogs": "2"}, "observabilityContainerLogs", "2"),
        ({"observability": "false", "observabilityContainerLogs": "true"}, "observabilityContainerLogs", "no effect"),
        ({"observabilityAlarmTopic": "gpu-alerts"}, "observabilityAlarmTopic", "is not an SNS topic ARN"),
        (
            {"observability": "false", "observabilityAlarmTopic": "arn:aws:sns:us-west-2:123456789012:gpu-alerts"},
            "observabilityAlarmTopic",
            "no effect",
        ),
    ],
)
def test_bad_values_fail_with_one_clear_error(values, key, message):
    error = str(config_error(**values))
    assert key in error and message in error


def test_a_near_miss_key_gets_a_suggestion():
    assert "observability" in str(config_error(observabilty="true"))


def test_render_writes_the_dashboard_and_says_whether_it_is_on(tmp_path):
    result = render_here("--stack", "dev", "--out", str(tmp_path / "on"))
    assert result.returncode == 0, result.stderr
    assert "Observability: on" in result.stdout
    # The line counts the alarms the program registers (the queue's and one idle-GPU alarm per pool), not a constant,
    # and names the exporter that feeds the GPU utilization panels.
    [line] = [x for x in result.stdout.splitlines() if x.startswith("Observability: on")]
    alarms = len(run_stack_file(PROJECT_ROOT / "Pulumi.dev.yaml", "dev").of_type(ALARM_TYPE))
    assert alarms >= 2 and f"{alarms} alarms" in line, line
    assert "dcgm-exporter" in line, line
    body = json.loads((tmp_path / "on" / "dashboard.json").read_text())
    assert [w["properties"]["title"] for w in body["widgets"]] == [w["title"] for w in DASHBOARD["widgets"]]

    off_file = tmp_path / "Pulumi.off.yaml"
    off_file.write_text((PROJECT_ROOT / "Pulumi.dev.yaml").read_text() + "  eks-gpu-spot:observability: false\n")
    result = render_here("--stack", "off", "--config-file", str(off_file), "--out", str(tmp_path / "off"))
    assert result.returncode == 0, result.stderr
    assert "Observability: off" in result.stdout
    assert not (tmp_path / "off" / "dashboard.json").exists()


def test_prices_are_data_with_sources():
    prices = load_data("observability")["prices"]
    for name in ("dashboard", "alarm", "logs"):
        assert prices[f"{name}_source"]
    assert prices["dashboard_per_month_usd"] > 0 and prices["alarm_per_month_usd"] > 0


TOPIC = "arn:aws:sns:us-west-2:123456789012:gpu-alerts"


def test_the_alarm_notifies_the_configured_topic_and_nothing_by_default(stack):
    assert "alarmActions" not in stack.one(ALARM_TYPE, QUEUE_ALARM).inputs
    alarm = render_stack(observabilityAlarmTopic=TOPIC).one(ALARM_TYPE, QUEUE_ALARM).inputs
    assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC]


def test_cloudwatchs_own_api_model_accepts_the_dashboard_and_the_alarm(monkeypatch):
    """botocore validates every parameter against CloudWatch's API model (types, enums, ranges) before moto answers:
    the registered dashboard and alarm go through PutDashboard and PutMetricAlarm as the provider would send them."""
    import boto3
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    run = render_stack(observabilityAlarmTopic=TOPIC)
    dashboard, alarm = run.one(DASHBOARD_TYPE).inputs, run.one(ALARM_TYPE, QUEUE_ALARM).inputs
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-west-2")
        cloudwatch.put_dashboard(DashboardName=dashboard["dashboardName"], DashboardBody=dashboard["dashboardBody"])
        assert json.loads(cloudwatch.get_dashboard(DashboardName=dashboard["dashboardName"])["DashboardBody"]) == (
            json.loads(dashboard["dashboardBody"])
        )
        cloudwatch.put_metric_alarm(
            AlarmName="stale",
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
            AlarmActions=alarm["alarmActions"],
            OKActions=alarm["okActions"],
        )
        (stored,) = cloudwatch.describe_alarms(AlarmNames=["stale"])["MetricAlarms"]
        assert stored["Threshold"] == ALARM["threshold_seconds"] and stored["AlarmActions"] == [TOPIC]
