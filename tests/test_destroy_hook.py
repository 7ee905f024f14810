"""The destroy safety net against moto (in-process AWS): only this cluster's leftovers are removed."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from infra.destroy_hook import remove_cluster_leftovers

CLUSTER = "eks-spot-gpu-abcd1234"
OTHER = "eks-spot-gpu-zzzz9999"  # a look-alike cluster in the same account
REGION = "us-west-2"


def karpenter_tags(cluster: str) -> list[dict]:
    return [
        {"Key": "karpenter.sh/nodepool", "Value": "gpu-spot"},
        {"Key": "eks:eks-cluster-name", "Value": cluster},
        {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
        {"Key": "karpenter.k8s.aws/ec2nodeclass", "Value": "gpu"},
    ]


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("ec2", region_name=REGION), boto3.client("elbv2", region_name=REGION)


def launch(ec2, tags: list[dict] | None) -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    spec = [{"ResourceType": "instance", "Tags": tags}] if tags else []
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0][
        "InstanceId"
    ]


def launch_template(ec2, name: str, tags: list[dict]) -> str:
    return ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"InstanceType": "p5.48xlarge"},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )["LaunchTemplate"]["LaunchTemplateId"]


def state(ec2, instance_id: str) -> str:
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]


def load_balancer_and_target_group(ec2, elbv2, name: str, cluster: str | None) -> tuple[str, str]:
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    tags = [{"Key": "elbv2.k8s.aws/cluster", "Value": cluster}] if cluster else [{"Key": "team", "Value": "x"}]
    lb = elbv2.create_load_balancer(Name=name, Subnets=subnets, Tags=tags)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name=f"{name}-tg", Protocol="HTTP", Port=80, VpcId=vpc, Tags=tags)["TargetGroups"][
        0
    ]["TargetGroupArn"]
    return lb, tg


def test_removes_only_this_clusters_leftovers(aws):
    ec2, elbv2 = aws
    ours = [launch(ec2, karpenter_tags(CLUSTER)) for _ in range(2)]
    other_cluster = launch(ec2, karpenter_tags(OTHER))
    untagged = launch(ec2, None)
    # Same cluster name but not launched by Karpenter (no nodepool tag): e.g. a system managed node group node.
    system_node = launch(ec2, [{"Key": "eks:eks-cluster-name", "Value": CLUSTER}])
    our_template = launch_template(ec2, "karpenter.k8s.aws/ours", karpenter_tags(CLUSTER))
    other_template = launch_template(ec2, "karpenter.k8s.aws/other", karpenter_tags(OTHER))
    our_lb, our_tg = load_balancer_and_target_group(ec2, elbv2, "ours", CLUSTER)
    other_lb, other_tg = load_balancer_and_target_group(ec2, elbv2, "other", OTHER)
    plain_lb, plain_tg = load_balancer_and_target_group(ec2, elbv2, "plain", None)

    report = remove_cluster_leftovers(CLUSTER, ec2, elbv2, timeout_seconds=5, poll_seconds=0, sleep=lambda _: None)

    assert sorted(report.terminated_instances) == sorted(ours)
    assert all(state(ec2, i) == "terminated" for i in ours)
    assert {state(ec2, i) for i in (other_cluster, untagged, system_node)} == {"running"}
    assert report.still_running == []
    templates = {t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"]}
    assert report.deleted_launch_templates == [our_template]
    assert our_template not in templates and other_template in templates
    remaining_lbs = {lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]}
    remaining_tgs = {tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]}
    assert report.deleted_load_balancers == [our_lb] and report.deleted_target_groups == [our_tg]
    assert remaining_lbs == {other_lb, plain_lb}
    assert remaining_tgs == {other_tg, plain_tg}


def test_nothing_to_do_is_a_quiet_no_op(aws):
    ec2, elbv2 = aws
    bystander = launch(ec2, karpenter_tags(OTHER))
    report = remove_cluster_leftovers(CLUSTER, ec2, elbv2, timeout_seconds=1, poll_seconds=0, sleep=lambda _: None)
    assert report.terminated_instances == [] and report.deleted_load_balancers == []
    assert state(ec2, bystander) == "running"


def test_waiting_is_bounded_and_reports_what_is_still_running(aws):
    ec2, elbv2 = aws
    ours = launch(ec2, karpenter_tags(CLUSTER))
    # An instance that never finishes terminating: the wait must give up and say so.
    real_terminate = ec2.terminate_instances
    ec2.terminate_instances = lambda **kwargs: None
    sleeps: list[float] = []
    report = remove_cluster_leftovers(CLUSTER, ec2, elbv2, timeout_seconds=0.05, poll_seconds=0.01, sleep=sleeps.append)
    ec2.terminate_instances = real_terminate
    assert report.still_running == [ours]
    assert sleeps  # it polled before giving up


def test_an_empty_cluster_name_is_refused(aws):
    ec2, elbv2 = aws
    with pytest.raises(ValueError, match="cluster_name"):
        remove_cluster_leftovers("", ec2, elbv2)


def test_the_hook_is_bound_before_delete_on_every_private_subnet_only(stack):
    subnets = stack.of_type("aws:ec2/subnet:Subnet")
    private = [s for s in subnets if "-private-" in s.name]
    assert len(private) == 4
    assert all(s.before_delete_hooks == ("cleanup-cluster-leftovers",) for s in private)
    assert all(s.before_delete_hooks == () for s in subnets if s not in private)
