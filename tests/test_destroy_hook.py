"""The destroy safety net against moto (in-process AWS): only this cluster's leftovers are removed.

Kept fast: moto's AMI catalogue is neither loaded nor described (an instance only needs an AMI id), the API models
are loaded once for the module, and waits run on a fake clock that advances only when the cleanup sleeps.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
import botocore.session
import pulumi
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra import destroy_hook
from infra.destroy_hook import before_anchor_delete, remove_cluster_leftovers

CLUSTER = "eks-spot-gpu-abcd1234"
OTHER = "eks-spot-gpu-zzzz9999"  # a look-alike cluster in the same account
REGION = "us-west-2"
AMI = "ami-760aaa0f"  # in moto's default catalogue; unvalidated anyway, as the catalogue is not loaded
LBC_TAG = "elbv2.k8s.aws/cluster"


class FakeClock:
    """`clock` and `sleep` for the cleanup: time passes only when it sleeps, so bounded waits take no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def cleanup(ec2: Any, elbv2: Any, cluster: str = CLUSTER, clock: FakeClock | None = None, **kwargs: Any):
    clock = clock or FakeClock()
    kwargs = {"timeout_seconds": 60, "poll_seconds": 10, **kwargs}
    return remove_cluster_leftovers(cluster, ec2, elbv2, sleep=clock.sleep, clock=clock, **kwargs)


def karpenter_tags(cluster: str) -> list[dict]:
    return [
        {"Key": "karpenter.sh/nodepool", "Value": "gpu-spot"},
        {"Key": "eks:eks-cluster-name", "Value": cluster},
        {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
        {"Key": "karpenter.k8s.aws/ec2nodeclass", "Value": "gpu"},
    ]


@functools.cache
def shared_botocore_session() -> botocore.session.Session:
    """One botocore session for every client of this module: it loads the (large) EC2 and ELBv2 API models once.
    `mock_aws` resets boto3's default session, so plain `boto3.client` would load them again for every test."""
    return botocore.session.get_session()


@functools.cache
def client(service: str) -> Any:
    """One client per service for the module (building one takes ~25 ms); moto serves it inside each test's mock."""
    return boto3.session.Session(botocore_session=shared_botocore_session(), region_name=REGION).client(service)


@pytest.fixture
def aws(monkeypatch):
    """A fresh moto account per test (so every assertion can see exactly what is left), without moto's AMI
    catalogue: an instance only needs an AMI id, and loading the catalogue made each test take seconds."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # read whenever moto builds an EC2 backend
    with mock_aws():
        yield client("ec2"), client("elbv2")


def launch(ec2, tags: list[dict] | None) -> str:
    spec = [{"ResourceType": "instance", "Tags": tags}] if tags else []
    return ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0]["InstanceId"]


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
    tags = [{"Key": LBC_TAG, "Value": cluster}] if cluster else [{"Key": "team", "Value": "x"}]
    lb = elbv2.create_load_balancer(Name=name, Subnets=subnets, Tags=tags)["LoadBalancers"][0]["LoadBalancerArn"]
    tg = elbv2.create_target_group(Name=f"{name}-tg", Protocol="HTTP", Port=80, VpcId=vpc, Tags=tags)["TargetGroups"][
        0
    ]["TargetGroupArn"]
    return lb, tg


def security_group(ec2, vpc: str, name: str, tags: dict[str, str]) -> str:
    spec = [{"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return ec2.create_security_group(
        GroupName=name, Description=name, VpcId=vpc, **({"TagSpecifications": spec} if tags else {})
    )["GroupId"]


def lbc_tags(cluster: str, resource: str = "backend-sg") -> dict[str, str]:
    return {LBC_TAG: cluster, "elbv2.k8s.aws/resource": resource}


def group_ids(ec2) -> set[str]:
    return {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}


def ingress(ec2, group_id: str) -> list[dict]:
    return ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]["IpPermissions"]


def dependency_violation(group_id: str) -> ClientError:
    error = {"Code": "DependencyViolation", "Message": f"resource {group_id} has a dependent object"}
    return ClientError({"Error": error}, "DeleteSecurityGroup")


class StrictEc2:
    """moto deletes a group that other groups' rules still reference; AWS refuses (DependencyViolation), as this
    proxy does. `in_use` maps a group id to how many more delete attempts fail (an ENI not yet released)."""

    def __init__(self, ec2: Any, in_use: dict[str, float] | None = None) -> None:
        self._ec2 = ec2
        self.in_use = dict(in_use or {})
        self.delete_attempts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)

    def delete_security_group(self, GroupId: str) -> None:
        self.delete_attempts.append(GroupId)
        if self.in_use.get(GroupId, 0) > 0:
            self.in_use[GroupId] -= 1
            raise dependency_violation(GroupId)
        for group in self._ec2.describe_security_groups()["SecurityGroups"]:
            pairs = [pair for p in group["IpPermissions"] for pair in p.get("UserIdGroupPairs", [])]
            if group["GroupId"] != GroupId and any(pair["GroupId"] == GroupId for pair in pairs):
                raise dependency_violation(GroupId)
        self._ec2.delete_security_group(GroupId=GroupId)


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

    report = cleanup(ec2, elbv2)

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
    assert report.lingering_load_balancers == [] and report.problems == []


def test_nothing_to_do_is_a_quiet_no_op(aws):
    ec2, elbv2 = aws
    bystander = launch(ec2, karpenter_tags(OTHER))
    clock = FakeClock()
    report = cleanup(ec2, elbv2, clock=clock)
    assert report.terminated_instances == [] and report.deleted_load_balancers == []
    assert report.deleted_security_groups == [] and report.problems == []
    assert state(ec2, bystander) == "running"
    assert clock.sleeps == []


def test_waiting_is_bounded_and_reports_what_is_still_running(aws, monkeypatch):
    ec2, elbv2 = aws
    ours = launch(ec2, karpenter_tags(CLUSTER))
    # An instance that never finishes terminating: the wait must give up and say so.
    monkeypatch.setattr(ec2, "terminate_instances", lambda **kwargs: None)
    clock = FakeClock()
    start = clock.now
    report = cleanup(ec2, elbv2, clock=clock, timeout_seconds=60, poll_seconds=10)
    assert report.still_running == [ours]
    assert clock.sleeps == [10] * 6  # it polled until the deadline, then gave up
    assert clock.now - start == 60
    assert any(ours in problem for problem in report.problems)


def test_an_empty_cluster_name_is_refused(aws):
    ec2, elbv2 = aws
    with pytest.raises(ValueError, match="cluster_name"):
        remove_cluster_leftovers("", ec2, elbv2)


def test_only_this_clusters_load_balancer_controller_security_groups_are_deleted(aws):
    ec2, elbv2 = aws
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    managed = security_group(ec2, vpc, "k8s-default-web", lbc_tags(CLUSTER, "ManagedLBSecurityGroup"))
    backend = security_group(ec2, vpc, "k8s-traffic-backend", lbc_tags(CLUSTER))
    survivors = {
        security_group(ec2, vpc, "k8s-other-backend", lbc_tags(OTHER)),
        security_group(ec2, vpc, "k8s-prefix-backend", lbc_tags(f"{CLUSTER}-2")),  # our name is only a prefix
        security_group(ec2, vpc, "node", {f"kubernetes.io/cluster/{CLUSTER}": "owned"}),  # not the LBC's tag
        security_group(ec2, vpc, "untagged", {}),
    }
    strict = StrictEc2(ec2)

    report = cleanup(strict, elbv2)

    assert sorted(report.deleted_security_groups) == sorted([managed, backend])
    assert survivors <= group_ids(ec2) and not {managed, backend} & group_ids(ec2)
    assert set(strict.delete_attempts) == {managed, backend}
    assert report.problems == [] and report.revoked_ingress_rules == []


def test_a_backend_group_is_deleted_after_the_rules_that_reference_it_are_revoked(aws):
    ec2, elbv2 = aws
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    backend = security_group(ec2, vpc, "k8s-traffic-backend", lbc_tags(CLUSTER))
    node = security_group(ec2, vpc, "eks-cluster-sg", {f"kubernetes.io/cluster/{CLUSTER}": "owned"})
    peer = security_group(ec2, vpc, "peer", {})
    ec2.authorize_security_group_ingress(  # what the controller adds for its backend group, beside unrelated rules
        GroupId=node,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": backend}]},
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.7.0.0/16"}]},
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": peer}]},
        ],
    )
    ec2.authorize_security_group_ingress(  # the peer references the backend group and itself on the same port
        GroupId=peer,
        IpPermissions=[
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": backend}, {"GroupId": peer}]},
        ],
    )
    before = {g: ingress(ec2, g) for g in (node, peer)}
    strict = StrictEc2(ec2)

    report = cleanup(strict, elbv2)

    assert report.deleted_security_groups == [backend] and report.problems == []
    assert sorted(report.revoked_ingress_rules) == sorted([f"{node}:{backend}", f"{peer}:{backend}"])
    assert {node, peer} <= group_ids(ec2) and backend not in group_ids(ec2)
    for group in (node, peer):  # exactly the rules from the backend group are gone, the rest are untouched
        expected = [
            {**p, "UserIdGroupPairs": [pair for pair in p.get("UserIdGroupPairs", []) if pair["GroupId"] != backend]}
            for p in before[group]
        ]
        expected = [p for p in expected if p["UserIdGroupPairs"] or p.get("IpRanges")]
        assert _comparable(ingress(ec2, group)) == _comparable(expected)
    assert sorted(p["FromPort"] for p in ingress(ec2, node)) == [443, 8080]
    assert ingress(ec2, peer)[0]["UserIdGroupPairs"][0]["GroupId"] == peer


def _comparable(permissions: list[dict]) -> list[tuple]:
    return sorted(
        (
            p["IpProtocol"],
            p.get("FromPort"),
            p.get("ToPort"),
            tuple(sorted(r["CidrIp"] for r in p.get("IpRanges", []))),
            tuple(sorted(pair["GroupId"] for pair in p.get("UserIdGroupPairs", []))),
        )
        for p in permissions
    )


def test_a_group_in_use_is_retried_within_the_bound_then_reported(aws):
    ec2, elbv2 = aws
    vpc = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    released_later = security_group(ec2, vpc, "k8s-a-backend", lbc_tags(CLUSTER))  # its LB's ENIs go after 2 tries
    stuck = security_group(ec2, vpc, "k8s-b-managed", lbc_tags(CLUSTER, "ManagedLBSecurityGroup"))
    strict = StrictEc2(ec2, in_use={released_later: 2, stuck: float("inf")})
    clock = FakeClock()

    report = cleanup(strict, elbv2, clock=clock, timeout_seconds=60, poll_seconds=10)

    assert report.deleted_security_groups == [released_later]
    assert stuck in group_ids(ec2) and released_later not in group_ids(ec2)
    assert len(report.problems) == 1 and stuck in report.problems[0] and "DependencyViolation" in report.problems[0]
    assert clock.sleeps == [10] * 6 and strict.delete_attempts.count(stuck) == 7


class Elbv2WithSlowDeletes:
    """A load balancer deleted through this proxy stays listed until the fake clock has slept `polls` times."""

    def __init__(self, elbv2: Any, clock: FakeClock, polls: float) -> None:
        self._elbv2, self._clock, self._polls = elbv2, clock, polls
        self.pending: list[str] = []
        self.listed_at_target_group_deletion: set[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "get_paginator":
            self._flush()
        return getattr(self._elbv2, name)

    def _flush(self) -> None:
        if len(self._clock.sleeps) >= self._polls:
            for arn in self.pending:
                self._elbv2.delete_load_balancer(LoadBalancerArn=arn)
            self.pending = []

    def delete_load_balancer(self, LoadBalancerArn: str) -> None:
        self.pending.append(LoadBalancerArn)

    def delete_target_group(self, TargetGroupArn: str) -> None:
        self._flush()
        listed = self._elbv2.describe_load_balancers()["LoadBalancers"]
        self.listed_at_target_group_deletion = {lb["LoadBalancerArn"] for lb in listed}
        self._elbv2.delete_target_group(TargetGroupArn=TargetGroupArn)


def test_target_groups_wait_until_the_deleted_load_balancers_are_gone(aws):
    ec2, elbv2 = aws
    our_lb, our_tg = load_balancer_and_target_group(ec2, elbv2, "slow", CLUSTER)
    clock = FakeClock()
    slow = Elbv2WithSlowDeletes(elbv2, clock, polls=2)

    report = cleanup(ec2, slow, clock=clock, timeout_seconds=60, poll_seconds=10)

    assert clock.sleeps == [10, 10]
    assert report.deleted_load_balancers == [our_lb] and report.lingering_load_balancers == []
    assert report.deleted_target_groups == [our_tg] and report.problems == []
    assert slow.listed_at_target_group_deletion is not None and our_lb not in slow.listed_at_target_group_deletion


def test_the_load_balancer_wait_gives_up_within_the_bound_and_says_so(aws):
    ec2, elbv2 = aws
    our_lb, _ = load_balancer_and_target_group(ec2, elbv2, "stuck", CLUSTER)
    clock = FakeClock()
    start = clock.now
    stuck = Elbv2WithSlowDeletes(elbv2, clock, polls=float("inf"))

    report = cleanup(ec2, stuck, clock=clock, timeout_seconds=60, poll_seconds=10)

    assert report.deleted_load_balancers == [our_lb] and report.lingering_load_balancers == [our_lb]
    assert clock.sleeps == [10] * 6 and clock.now - start == 60
    assert any("load balancers still listed" in p and our_lb in p for p in report.problems)


# --- the hook function, as Pulumi calls it before deleting the teardown anchor ---


def anchor_args(old_outputs: dict | None = None, old_inputs: dict | None = None) -> pulumi.ResourceHookArgs:
    return pulumi.ResourceHookArgs(
        urn="urn:pulumi:dev::eks-gpu-spot::random:index/randomId:RandomId::teardown-cleanup",
        id="abcd",
        name="teardown-cleanup",
        type="random:index/randomId:RandomId",
        old_inputs=old_inputs,
        old_outputs=old_outputs,
    )


@pytest.fixture
def sessions(monkeypatch) -> list[dict]:
    """Records the boto3 sessions and clients the hook creates (still moto's, under `aws`)."""
    created: list[dict] = []
    real_session = boto3.session.Session

    class RecordingSession(real_session):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{"botocore_session": shared_botocore_session(), **kwargs})
            self.record = {"region_name": kwargs.get("region_name"), "clients": {}}
            created.append(self.record)

        def client(self, service_name: str, **kwargs: Any) -> Any:
            self.record["clients"][service_name] = kwargs.get("config")
            return super().client(service_name, **kwargs)

    monkeypatch.setattr(boto3.session, "Session", RecordingSession)
    return created


@pytest.mark.parametrize("where", ["old_outputs", "old_inputs"])
def test_the_hook_cleans_up_after_the_cluster_and_region_in_the_keepers(aws, sessions, monkeypatch, where):
    ec2, _ = aws
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the keepers' region wins over the environment's
    ours = launch(ec2, karpenter_tags(CLUSTER))
    other = launch(ec2, karpenter_tags(OTHER))
    vpc = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    backend = security_group(ec2, vpc, "k8s-traffic-backend", lbc_tags(CLUSTER))
    state_ = {"keepers": {"clusterName": CLUSTER, "region": REGION}, "hex": "abcd"}
    args = anchor_args(old_outputs=state_) if where == "old_outputs" else anchor_args({"hex": "abcd"}, state_)

    assert before_anchor_delete(args) is None

    assert state(ec2, ours) == "terminated" and state(ec2, other) == "running"
    assert backend not in group_ids(ec2)
    assert [s["region_name"] for s in sessions] == [REGION]
    configs = sessions[0]["clients"]
    assert set(configs) == {"ec2", "elbv2"}
    for config in configs.values():
        assert config.connect_timeout <= 30 and config.read_timeout <= 120
        assert config.retries["mode"] == "standard"


@pytest.mark.parametrize(
    "args",
    [
        anchor_args(),
        anchor_args({"hex": "abcd"}, {"byteLength": 4}),
        anchor_args({"keepers": {"region": REGION}}),  # no cluster name: nothing to scope the cleanup by
        anchor_args({"keepers": {"clusterName": CLUSTER}}),
    ],
)
def test_without_keepers_the_hook_warns_and_does_nothing(monkeypatch, args):
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    monkeypatch.setattr(destroy_hook, "remove_cluster_leftovers", lambda *a, **k: pytest.fail("cleaned up"))

    assert before_anchor_delete(args) is None

    assert len(warnings) == 1 and "keepers" in warnings[0]


def test_the_hook_fails_when_the_cleanup_is_incomplete(aws, sessions, monkeypatch):
    report = destroy_hook.CleanupReport(problems=["security group sg-1 not deleted: DependencyViolation: in use"])
    monkeypatch.setattr(destroy_hook, "remove_cluster_leftovers", lambda *a, **k: report)
    with pytest.raises(RuntimeError, match="sg-1"):
        before_anchor_delete(anchor_args({"keepers": {"clusterName": CLUSTER, "region": REGION}}))
