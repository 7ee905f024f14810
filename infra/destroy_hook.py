"""Safety net for `pulumi destroy --run-program`: remove what the controllers created outside Pulumi state.

Karpenter's instances and launch templates, and the load balancers and target groups of the AWS Load Balancer
Controller, are not in Pulumi state. If they outlive their controllers, subnet and VPC deletion fails and GPU
instances keep billing. A `before_delete` hook on the private subnets runs this cleanup; it only touches
resources tagged for this cluster, exactly as the controllers tag them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.network import DISCOVERY_TAG

log = logging.getLogger(__name__)

NODEPOOL_TAG = "karpenter.sh/nodepool"
CLUSTER_NAME_TAG = "eks:eks-cluster-name"
NODECLASS_TAG = "karpenter.k8s.aws/ec2nodeclass"
LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


@dataclass
class CleanupReport:
    terminated_instances: list[str] = field(default_factory=list)
    deleted_launch_templates: list[str] = field(default_factory=list)
    deleted_load_balancers: list[str] = field(default_factory=list)
    deleted_target_groups: list[str] = field(default_factory=list)
    still_running: list[str] = field(default_factory=list)


def remove_cluster_leftovers(
    cluster_name: str,
    ec2: Any,
    elbv2: Any,
    timeout_seconds: float = 900,
    poll_seconds: float = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> CleanupReport:
    """Terminate Karpenter's instances of `cluster_name` (waiting at most `timeout_seconds`), then delete its
    launch templates and the LB controller's load balancers and target groups. Clients are boto3 clients."""
    if not cluster_name:
        raise ValueError("cluster_name is required: cleanup is scoped by it")
    report = CleanupReport()

    instance_ids = _karpenter_instances(ec2, cluster_name)
    if instance_ids:
        ec2.terminate_instances(InstanceIds=instance_ids)
        report.terminated_instances = instance_ids
        log.info("terminated %d Karpenter instances of %s: %s", len(instance_ids), cluster_name, instance_ids)
        deadline = time.monotonic() + timeout_seconds
        while (remaining := _still_live(ec2, instance_ids)) and time.monotonic() < deadline:
            sleep(poll_seconds)
        report.still_running = remaining

    for template in _karpenter_launch_templates(ec2, cluster_name):
        ec2.delete_launch_template(LaunchTemplateId=template)
        report.deleted_launch_templates.append(template)
        log.info("deleted Karpenter launch template %s of %s", template, cluster_name)

    for arn in _tagged_elbv2(elbv2, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", cluster_name):
        elbv2.delete_load_balancer(LoadBalancerArn=arn)
        report.deleted_load_balancers.append(arn)
        log.info("deleted load balancer %s of %s", arn, cluster_name)
    for arn in _tagged_elbv2(elbv2, "describe_target_groups", "TargetGroups", "TargetGroupArn", cluster_name):
        elbv2.delete_target_group(TargetGroupArn=arn)
        report.deleted_target_groups.append(arn)
        log.info("deleted target group %s of %s", arn, cluster_name)
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


def _tagged_elbv2(elbv2: Any, operation: str, key: str, arn_key: str, cluster_name: str) -> list[str]:
    arns = [item[arn_key] for page in elbv2.get_paginator(operation).paginate() for item in page[key]]
    tagged = []
    for start in range(0, len(arns), 20):  # DescribeTags takes at most 20 ARNs
        for description in elbv2.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            tags = {t["Key"]: t["Value"] for t in description.get("Tags", [])}
            if tags.get(LBC_CLUSTER_TAG) == cluster_name:
                tagged.append(description["ResourceArn"])
    return tagged


def cleanup_hook(region: str) -> pulumi.ResourceHook:
    """`before_delete` hook for a private subnet: reads the cluster name from the subnet's discovery tag."""

    def before_subnet_delete(args: pulumi.ResourceHookArgs) -> None:
        tags = (args.old_outputs or {}).get("tags") or {}
        cluster_name = tags.get(DISCOVERY_TAG)
        if not cluster_name:
            pulumi.log.warn(f"{args.name}: no {DISCOVERY_TAG} tag, so no cluster to clean up after")
            return
        import boto3  # only at destroy time: boto3 is slow to import

        session = boto3.session.Session(region_name=region)
        report = remove_cluster_leftovers(cluster_name, session.client("ec2"), session.client("elbv2"))
        pulumi.log.info(f"cleanup for {cluster_name}: {report}")
        if report.still_running:
            raise RuntimeError(f"instances of {cluster_name} still not terminated: {report.still_running}")

    return pulumi.ResourceHook(
        "cleanup-cluster-leftovers", before_subnet_delete, opts=pulumi.ResourceHookOptions(on_dry_run=False)
    )
