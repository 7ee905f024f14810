"""Safety net for `pulumi destroy --run-program`: remove what the controllers created outside Pulumi state.

Karpenter's instances and launch templates, and the load balancers, target groups and security groups of the AWS
Load Balancer Controller, are not in Pulumi state. If they outlive their controllers, cluster, subnet and VPC
deletion fails and GPU instances keep billing. The cleanup runs as a `before_delete` hook (`HOOK_NAME`) on a
teardown anchor: a `random.RandomId` with `keepers={"clusterName": ..., "region": ...}` that depends on the EKS
cluster and that both controller releases and the node pools depend on, so it runs after they are deleted and
before the cluster is. It only touches resources tagged for this cluster, exactly as the controllers tag them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

log = logging.getLogger(__name__)

HOOK_NAME = "cleanup-cluster-leftovers"
NODEPOOL_TAG = "karpenter.sh/nodepool"
CLUSTER_NAME_TAG = "eks:eks-cluster-name"
NODECLASS_TAG = "karpenter.k8s.aws/ec2nodeclass"
LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
# AWS clients of the hook: fail fast on a dead endpoint, retry throttling and transient errors a few times.
CLIENT_CONFIG = {"connect_timeout": 10, "read_timeout": 60, "retries": {"mode": "standard", "max_attempts": 5}}


@dataclass
class CleanupReport:
    terminated_instances: list[str] = field(default_factory=list)
    deleted_launch_templates: list[str] = field(default_factory=list)
    deleted_load_balancers: list[str] = field(default_factory=list)
    deleted_target_groups: list[str] = field(default_factory=list)
    revoked_ingress_rules: list[str] = field(default_factory=list)
    """`<group id>:<source group id>`: rules of other groups that referenced a deleted LB controller group."""
    deleted_security_groups: list[str] = field(default_factory=list)
    still_running: list[str] = field(default_factory=list)
    """Instances still not terminated when the wait gave up."""
    lingering_load_balancers: list[str] = field(default_factory=list)
    """Deleted load balancers still listed when the wait gave up."""
    problems: list[str] = field(default_factory=list)
    """What could not be cleaned up (and why); the cleanup goes on past each of them."""


def remove_cluster_leftovers(
    cluster_name: str,
    ec2: Any,
    elbv2: Any,
    *,
    timeout_seconds: float = 900,
    poll_seconds: float = 10,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CleanupReport:
    """Terminate Karpenter's instances of `cluster_name`, delete its launch templates, then the LB controller's
    load balancers, target groups and security groups. Clients are boto3 clients.

    All waiting (instances terminated, load balancers gone, security groups no longer in use) shares one deadline,
    `timeout_seconds` after the start by `clock()`, and pauses with `sleep(poll_seconds)`."""
    if not cluster_name:
        raise ValueError("cluster_name is required: cleanup is scoped by it")
    from botocore.exceptions import ClientError  # botocore comes with boto3, imported at destroy time only

    report = CleanupReport()
    deadline = clock() + timeout_seconds

    def wait_until_empty(check: Callable[[], list[str]]) -> list[str]:
        while (remaining := check()) and clock() < deadline:
            sleep(poll_seconds)
        return remaining

    instance_ids = _karpenter_instances(ec2, cluster_name)
    if instance_ids:
        ec2.terminate_instances(InstanceIds=instance_ids)
        report.terminated_instances = instance_ids
        log.info("terminated %d Karpenter instances of %s: %s", len(instance_ids), cluster_name, instance_ids)
        report.still_running = wait_until_empty(lambda: _still_live(ec2, instance_ids))
        if report.still_running:
            report.problems.append(f"instances still not terminated within {timeout_seconds}s: {report.still_running}")

    for template in _karpenter_launch_templates(ec2, cluster_name):
        ec2.delete_launch_template(LaunchTemplateId=template)
        report.deleted_launch_templates.append(template)
        log.info("deleted Karpenter launch template %s of %s", template, cluster_name)

    for arn in _tagged_elbv2(elbv2, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", cluster_name):
        try:
            elbv2.delete_load_balancer(LoadBalancerArn=arn)
        except ClientError as error:
            report.problems.append(f"load balancer {arn} not deleted: {_describe(error)}")
            continue
        report.deleted_load_balancers.append(arn)
        log.info("deleted load balancer %s of %s", arn, cluster_name)
    if report.deleted_load_balancers:
        deleted = set(report.deleted_load_balancers)
        report.lingering_load_balancers = wait_until_empty(lambda: sorted(deleted & _load_balancers(elbv2)))
        if report.lingering_load_balancers:
            report.problems.append(
                f"load balancers still listed within {timeout_seconds}s: {report.lingering_load_balancers}"
            )

    for arn in _tagged_elbv2(elbv2, "describe_target_groups", "TargetGroups", "TargetGroupArn", cluster_name):
        try:
            elbv2.delete_target_group(TargetGroupArn=arn)
        except ClientError as error:
            report.problems.append(f"target group {arn} not deleted: {_describe(error)}")
            continue
        report.deleted_target_groups.append(arn)
        log.info("deleted target group %s of %s", arn, cluster_name)

    groups = _tagged_security_groups(ec2, cluster_name)
    for group in groups:
        _revoke_references(ec2, group, report, ClientError)
    pending = {group["GroupId"]: "" for group in groups}
    while True:
        for group_id in list(pending):
            try:
                ec2.delete_security_group(GroupId=group_id)
            except ClientError as error:
                if _code(error) == "InvalidGroup.NotFound":
                    del pending[group_id]
                elif _code(error) == "DependencyViolation":  # e.g. a deleted load balancer's ENIs, not yet released
                    pending[group_id] = _describe(error)
                else:
                    report.problems.append(f"security group {group_id} not deleted: {_describe(error)}")
                    del pending[group_id]
                continue
            del pending[group_id]
            report.deleted_security_groups.append(group_id)
            log.info("deleted load balancer controller security group %s of %s", group_id, cluster_name)
        if not pending or clock() >= deadline:
            break
        sleep(poll_seconds)
    report.problems.extend(f"security group {g} not deleted: {why}" for g, why in pending.items())
    return report


def _karpenter_instances(ec2: Any, cluster_name: str) -> list[str]:
    filters = [
        {"Name": "tag-key", "Values": [NODEPOOL_TAG]},
        {"Name": f"tag:{CLUSTER_NAME_TAG}", "Values": [cluster_name]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
    return [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _still_live(ec2: Any, instance_ids: list[str]) -> list[str]:
    filters = [{"Name": "instance-state-name", "Values": list(LIVE_STATES)}]
    pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=instance_ids, Filters=filters)
    return [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _karpenter_launch_templates(ec2: Any, cluster_name: str) -> list[str]:
    # Scoped as Karpenter's own IAM policy scopes DeleteLaunchTemplate: cluster-owned and made for a node class.
    filters = [
        {"Name": f"tag:kubernetes.io/cluster/{cluster_name}", "Values": ["owned"]},
        {"Name": "tag-key", "Values": [NODECLASS_TAG]},
    ]
    pages = ec2.get_paginator("describe_launch_templates").paginate(Filters=filters)
    return [t["LaunchTemplateId"] for page in pages for t in page["LaunchTemplates"]]


def _load_balancers(elbv2: Any) -> set[str]:
    # All of them: DescribeLoadBalancers with the ARN of a deleted load balancer fails instead of omitting it.
    pages = elbv2.get_paginator("describe_load_balancers").paginate()
    return {lb["LoadBalancerArn"] for page in pages for lb in page["LoadBalancers"]}


def _tagged_elbv2(elbv2: Any, operation: str, key: str, arn_key: str, cluster_name: str) -> list[str]:
    arns = [item[arn_key] for page in elbv2.get_paginator(operation).paginate() for item in page[key]]
    tagged = []
    for start in range(0, len(arns), 20):  # DescribeTags takes at most 20 ARNs
        for description in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            tags = {t["Key"]: t["Value"] for t in description.get("Tags", [])}
            if tags.get(LBC_CLUSTER_TAG) == cluster_name:
                tagged.append(description["ResourceArn"])
    return tagged


def _tagged_security_groups(ec2: Any, cluster_name: str) -> list[dict]:
    """The LB controller's groups of `cluster_name` (its per-LB managed groups and its shared backend group): the
    controller tags both `elbv2.k8s.aws/cluster=<cluster>`, and its IAM policy only deletes groups so tagged."""
    filters = [{"Name": f"tag:{LBC_CLUSTER_TAG}", "Values": [cluster_name]}]
    pages = ec2.get_paginator("describe_security_groups").paginate(Filters=filters)
    return [
        group
        for page in pages
        for group in page["SecurityGroups"]
        if {t["Key"]: t["Value"] for t in group.get("Tags", [])}.get(LBC_CLUSTER_TAG) == cluster_name
    ]


def _revoke_references(ec2: Any, group: dict, report: CleanupReport, client_error: type[Exception]) -> None:
    """Revoke the ingress rules of the other groups in `group`'s VPC whose source is `group` (the controller adds
    such rules to the node and cluster groups for its backend group), and nothing else of those rules."""
    group_id = group["GroupId"]
    if not group.get("VpcId"):
        return
    filters = [{"Name": "vpc-id", "Values": [group["VpcId"]]}]
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=filters):
        for other in page["SecurityGroups"]:
            if other["GroupId"] == group_id:
                continue  # a self-reference goes with the group
            permissions = [
                {
                    **{k: p[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in p},
                    "UserIdGroupPairs": [{"GroupId": group_id}],
                }
                for p in other.get("IpPermissions", [])
                if any(pair.get("GroupId") == group_id for pair in p.get("UserIdGroupPairs", []))
            ]
            if not permissions:
                continue
            try:
                ec2.revoke_security_group_ingress(GroupId=other["GroupId"], IpPermissions=permissions)
            except client_error as error:
                report.problems.append(f"rules of {other['GroupId']} from {group_id} not revoked: {_describe(error)}")
                continue
            report.revoked_ingress_rules.append(f"{other['GroupId']}:{group_id}")
            log.info("revoked the ingress rules of %s from %s", other["GroupId"], group_id)


def _code(error: Any) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _describe(error: Any) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', error)}"


def _keepers(args: pulumi.ResourceHookArgs) -> tuple[str, str] | None:
    """(cluster name, region) from the anchor's `keepers`: its last outputs, else its last inputs."""
    for state in (args.old_outputs, args.old_inputs):
        keepers = (state or {}).get("keepers")
        if isinstance(keepers, Mapping):
            cluster_name, region = keepers.get("clusterName"), keepers.get("region")
            if isinstance(cluster_name, str) and cluster_name and isinstance(region, str) and region:
                return cluster_name, region
    return None


def before_anchor_delete(args: pulumi.ResourceHookArgs) -> None:
    """The hook's function: clean up after the cluster named in the anchor's keepers, in the keepers' region.

    Fails (so the destroy stops before the cluster goes) when instances are still running or something could not
    be deleted; rerunning `pulumi destroy --run-program` retries."""
    found = _keepers(args)
    if found is None:
        pulumi.log.warn(f"{args.name}: no keepers.clusterName and keepers.region, so no cluster to clean up after")
        return
    cluster_name, region = found
    import boto3  # only at destroy time: boto3 is slow to import
    from botocore.config import Config

    session = boto3.session.Session(region_name=region)  # credentials as the AWS CLI finds them (AWS_PROFILE...)
    config = Config(**CLIENT_CONFIG)
    report = remove_cluster_leftovers(
        cluster_name, session.client("ec2", config=config), session.client("elbv2", config=config)
    )
    pulumi.log.info(f"cleanup for {cluster_name} in {region}: {report}")
    if report.problems:
        raise RuntimeError(f"cleanup for {cluster_name} in {region} is incomplete: " + "; ".join(report.problems))


def cleanup_hook() -> pulumi.ResourceHook:
    """The `before_delete` hook of the teardown anchor (not run on previews)."""
    return pulumi.ResourceHook(HOOK_NAME, before_anchor_delete, opts=pulumi.ResourceHookOptions(on_dry_run=False))
