"""Karpenter: node and controller IAM, the interruption queue and its EventBridge rules, and the two Helm releases.

Mirrors Karpenter's own getting-started CloudFormation (v1.14): the controller's permissions are the same six
managed policies (policies/karpenter-controller-*.json), the controller authenticates with EKS Pod Identity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.cluster import NODE_POLICIES, Cluster, ec2_trust_policy, managed_policy_arn
from infra.config import StackConfig
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR
from infra.gpu.headroom import uses_headroom
from infra.gpu.pools import uses_node_overlays
from infra.policies import pod_identity_trust_policy, render_policy

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
CHART_REPOSITORY = "oci://public.ecr.aws/karpenter"
# Upstream splits the controller's permissions this way because one managed policy holds at most 6,144 characters.
CONTROLLER_POLICIES = (
    "node-lifecycle",
    "iam-integration",
    "eks-integration",
    "interruption",
    "resource-discovery",
)
# Upstream's sixth policy (arc-zonal-shift:GetManagedResource) serves `settings.enableZonalShift`, which is off:
# Karpenter panics at start with it unless the EKS cluster is enabled for zonal shift (karpenter-provider-aws
# pkg/operator/operator.go), and pulumi-eks 4.x's Cluster has no zonal-shift input. Least privilege: not granted.
UNUSED_UPSTREAM_POLICIES = ("zonal-shift",)
# EventBridge rules feeding the interruption queue: resource suffix -> (source, detail-type), as upstream.
INTERRUPTION_EVENTS = {
    "scheduled-change": ("aws.health", "AWS Health Event"),
    "spot-interruption": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "instance-state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
    "capacity-reservation-interruption": ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
}
QUEUE_RETENTION_SECONDS = 300  # interruption notices are useless after a few minutes
# Upstream getting-started sizing; memory request = limit so the controller is never OOM-killed for overcommit.
CONTROLLER_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
REPLICAS = 2


def controller_policy_file(policy: str) -> str:
    return f"karpenter-controller-{policy}.json"


@dataclass(frozen=True)
class KarpenterArgs:
    cluster: Cluster
    config: StackConfig
    teardown: pulumi.Resource
    """Carries the teardown cleanup hook; both releases depend on it, so they are deleted before it runs."""
    cluster_name: pulumi.Input[str]
    """The name the cluster will have (known before it exists): what only needs the name (queue, IAM policies,
    EventBridge rules) uses it instead of `cluster.name`, so it is created in parallel with the control plane."""


class Karpenter(pulumi.ComponentResource):
    """Everything Karpenter needs to launch, tag, interrupt and terminate nodes for this cluster."""

    node_role: aws.iam.Role
    controller_role: aws.iam.Role
    queue: aws.sqs.Queue
    interruption_rules: dict[str, aws.cloudwatch.EventRule]
    """INTERRUPTION_EVENTS key -> its EventBridge rule (the dashboard counts what each one matched)."""
    crd_release: k8s.helm.v3.Release
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:Karpenter", name, None, opts)
        cluster, cfg = args.cluster, args.config
        child = pulumi.ResourceOptions(parent=self)

        self.node_role, node_access = self._node_role(name, cluster)
        self.queue = self._interruption_queue(name, args.cluster_name)
        self.controller_role, controller_grants = self._controller_role(name, cluster, args.cluster_name, cfg)
        pod_identity = aws.eks.PodIdentityAssociation(
            f"{name}-controller",
            cluster_name=cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=self.controller_role.arn,
            opts=child,
        )
        # Account-wide and created once per account: only when config says this account has never used Spot.
        spot_role = (
            [aws.iam.ServiceLinkedRole(f"{name}-spot", aws_service_name="spot.amazonaws.com", opts=child)]
            if cfg.create_spot_service_linked_role
            else []
        )

        # CRDs as their own release: Helm installs a chart's crds/ only on first install, never upgrades them.
        self.crd_release = k8s.helm.v3.Release(
            f"{name}-crd",
            name="karpenter-crd",
            chart=f"{CHART_REPOSITORY}/karpenter-crd",
            version=cfg.karpenter_version,
            namespace=NAMESPACE,
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.k8s_provider, depends_on=[args.teardown]),
        )
        self.release = k8s.helm.v3.Release(
            name,
            name="karpenter",
            chart=f"{CHART_REPOSITORY}/karpenter",
            version=cfg.karpenter_version,
            namespace=NAMESPACE,
            skip_crds=True,
            values=_chart_values(cluster.name, self.queue.name, cfg),
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.k8s_provider,
                depends_on=[
                    args.teardown,
                    self.crd_release,
                    cluster.system_node_group,  # the only nodes the controller may run on
                    cluster.addons["eks-pod-identity-agent"],
                    cluster.addons["coredns"],  # the controller resolves AWS endpoints at start
                    pod_identity,
                    *controller_grants,
                    node_access,  # nodes Karpenter launches could not join without it
                    self.queue,
                    *spot_role,
                ],
            ),
        )

        self.register_outputs(
            {
                "node_role_name": self.node_role.name,
                "controller_role_arn": self.controller_role.arn,
                "queue_name": self.queue.name,
            }
        )

    def _node_role(self, name: str, cluster: Cluster) -> tuple[aws.iam.Role, aws.eks.AccessEntry]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-node", assume_role_policy=ec2_trust_policy(), opts=child)
        for policy in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=role.name,
                policy_arn=managed_policy_arn(cluster.partition, policy),
                opts=child,
            )
        # API authentication mode: without an EC2_LINUX access entry the nodes' kubelets are not let in.
        access = aws.eks.AccessEntry(
            f"{name}-node", cluster_name=cluster.name, principal_arn=role.arn, type="EC2_LINUX", opts=child
        )
        return role, access

    def _interruption_queue(self, name: str, cluster_name: pulumi.Input[str]) -> aws.sqs.Queue:
        child = pulumi.ResourceOptions(parent=self)
        self.interruption_rules = {}
        queue = aws.sqs.Queue(
            f"{name}-interruption",
            name=cluster_name,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            opts=child,
        )
        queue_policy = aws.sqs.QueuePolicy(
            f"{name}-interruption",
            queue_url=queue.url,
            policy=render_policy("karpenter-interruption-queue.json", queue_arn=queue.arn),
            opts=child,
        )
        for event, (source, detail_type) in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                description=pulumi.Output.concat(
                    "Karpenter interruption events (", detail_type, ") for ", cluster_name
                ),
                event_pattern=json.dumps({"source": [source], "detail-type": [detail_type]}),
                opts=child,
            )
            self.interruption_rules[event] = rule
            aws.cloudwatch.EventTarget(
                f"{name}-{event}",
                rule=rule.name,
                target_id="KarpenterInterruptionQueueTarget",
                arn=queue.arn,
                # EventBridge drops events it may not send yet; the queue policy lets it send.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[queue_policy]),
            )
        return queue

    def _controller_role(
        self, name: str, cluster: Cluster, cluster_name: pulumi.Input[str], cfg: StackConfig
    ) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-controller",
            assume_role_policy=pod_identity_trust_policy(),
            opts=child,
        )
        placeholders = {
            "partition": cluster.partition,
            "region": cfg.region,
            "account_id": cluster.account_id,
            "cluster_name": cluster_name,
            "node_role_arn": self.node_role.arn,
            "queue_arn": self.queue.arn,
        }
        attachments = []
        for policy in CONTROLLER_POLICIES:
            managed = aws.iam.Policy(
                f"{name}-controller-{policy}",
                description=pulumi.Output.concat("Karpenter controller (", policy, ") for ", cluster_name),
                policy=render_policy(controller_policy_file(policy), **placeholders),
                opts=child,
            )
            attachments.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-controller-{policy}", role=role.name, policy_arn=managed.arn, opts=child
                )
            )
        return role, attachments


def _chart_values(cluster_name: pulumi.Input[str], queue_name: pulumi.Input[str], cfg: StackConfig) -> dict[str, Any]:
    region = cfg.region
    return {
        "settings": {
            "clusterName": cluster_name,
            "interruptionQueue": queue_name,
            "featureGates": {
                # Replace a node whose GPU fails: AcceleratedHardwareReady=False (set by the eks-node-monitoring-agent
                # add-on) for 10 minutes; stops while more than 20% of a pool is unhealthy (Karpenter docs,
                # concepts/disruption.md, Node Repair). Alpha in 1.14, off by default.
                "nodeRepair": True,
                # NodeOverlays tell Karpenter about time-sliced GPUs (infra/gpu/pools.py); only when a pool uses them.
                "nodeOverlay": uses_node_overlays(cfg),
                # Static pools (gpuPools[i].replicas) hold a fixed number of nodes; alpha in 1.14, off by default.
                "staticCapacity": any(pool.static for pool in cfg.effective_gpu_pools),
                # Warm headroom (gpuPools[i].headroom) is a CapacityBuffer; alpha in 1.14, off by default.
                "capacityBuffer": uses_headroom(cfg),
            },
        },
        # Pod Identity binds the role to this exact name; the chart would otherwise derive it from the release.
        "serviceAccount": {"name": SERVICE_ACCOUNT},
        # Two replicas on system nodes only: Karpenter must never run on nodes it manages. The chart's default
        # required anti-affinity (hostname) and zone spread keep the replicas on separate nodes.
        "replicas": REPLICAS,
        "nodeSelector": {"kubernetes.io/os": "linux", **SYSTEM_NODE_SELECTOR},
        # No controller.image: the published chart pins its own release's image by tag and digest (the release
        # pipeline writes both into values.yaml); an override could only drop the digest pin.
        "controller": {
            "resources": CONTROLLER_RESOURCES,
            # System nodes allow one IMDS hop, so the pod cannot read its region from IMDS.
            "env": [{"name": "AWS_REGION", "value": region}],
        },
    }
