"""CloudWatch observability of the stack (key `observability`): the `amazon-cloudwatch-observability` add-on with its
Pod Identity, a dashboard of GPU allocation, Spot interruptions, the interruption queue and pending pods, and one
alarm on the queue. Everything here is additive: nothing else depends on it, so it is off the deploy's critical path
(the add-on waits for the system nodes, as the other node-running add-ons do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.cloudwatch.addon import ADDON, ADDON_NAME, observability_configuration
from infra.cloudwatch.dashboard import ALARM, alarm_dimensions, console_url, dashboard_body, dashboard_name
from infra.cloudwatch.dcgm_exporter import EXPORTER, IDLE_ALARM, exporter_values
from infra.cluster import Cluster, managed_policy_arn
from infra.config import StackConfig
from infra.karpenter import Karpenter
from infra.policies import pod_identity_trust_policy


@dataclass(frozen=True)
class ObservabilityArgs:
    cluster: Cluster
    karpenter: Karpenter
    config: StackConfig
    cluster_name: pulumi.Input[str]
    """The name the cluster will have (known before it exists): the dashboard and alarm need only names."""


class Observability(pulumi.ComponentResource):
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:Observability", name, None, opts)
        cluster, karpenter, cfg = args.cluster, args.karpenter, args.config
        child = pulumi.ResourceOptions(parent=self)

        # The agent's identity (and Fluent Bit's: same service account), through EKS Pod Identity.
        role = aws.iam.Role(f"{name}-agent", assume_role_policy=pod_identity_trust_policy(), opts=child)
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-agent",
            role=role.name,
            policy_arn=managed_policy_arn(cluster.partition, ADDON["managed_policy"]),
            opts=child,
        )
        self.addon = aws.eks.Addon(
            f"{name}-{ADDON_NAME}",
            cluster_name=cluster.name,
            addon_name=ADDON_NAME,
            addon_version=cfg.addon_version(ADDON_NAME),
            configuration_values=pulumi.Output.from_input(args.cluster_name).apply(
                lambda n: json.dumps(observability_configuration(cfg, n), sort_keys=True)
            ),
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(role_arn=role.arn, service_account=ADDON["service_account"])
            ],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # Its operator runs on the system nodes; the Pod Identity agent must be there to hand out credentials.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[cluster.system_node_group, cluster.addons["eks-pod-identity-agent"], attachment],
            ),
        )

        rules = {event: rule.name for event, rule in karpenter.interruption_rules.items()}
        name_of_dashboard = pulumi.Output.from_input(args.cluster_name).apply(dashboard_name)
        body = pulumi.Output.all(args.cluster_name, karpenter.queue.name, rules).apply(
            lambda v: json.dumps(dashboard_body(cfg.region, v[0], v[1], v[2]), sort_keys=True)
        )
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=name_of_dashboard, dashboard_body=body, opts=child
        )
        metric = ALARM["metric"]
        topics = [cfg.observability_alarm_topic] if cfg.observability_alarm_topic else None
        aws.cloudwatch.MetricAlarm(
            f"{name}-interruption-queue-stale",
            alarm_description=pulumi.Output.concat(
                "Karpenter is not consuming the interruption queue of ",
                args.cluster_name,
                ": its oldest message is older than ",
                str(ALARM["threshold_seconds"]),
                " s (messages expire at 300 s, unhandled).",
            ),
            namespace=metric["namespace"],
            metric_name=metric["metric"],
            dimensions=karpenter.queue.name.apply(alarm_dimensions),
            statistic=metric["stat"],
            period=ALARM["period_seconds"],
            evaluation_periods=ALARM["evaluation_periods"],
            threshold=ALARM["threshold_seconds"],
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            # observabilityAlarmTopic: notified when the alarm fires and when it clears.
            alarm_actions=topics,
            ok_actions=topics,
            opts=child,
        )
        # GPU utilization from the node monitoring agent's DCGM engine (infra/cloudwatch/dcgm_exporter.py).
        k8s.helm.v3.Release(
            f"{name}-dcgm-exporter",
            name=EXPORTER["release"],
            chart=EXPORTER["chart"],
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=EXPORTER["repository"]),
            version=EXPORTER["version"],
            namespace=EXPORTER["namespace"],
            values=exporter_values(),
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.k8s_provider, depends_on=[self.addon]),
        )
        idle = IDLE_ALARM["metric"]
        for pool in cfg.effective_gpu_pools:
            aws.cloudwatch.MetricAlarm(
                f"{name}-{pool.name}-gpus-idle",
                alarm_description=pulumi.Output.concat(
                    "GPU pool ",
                    pool.name,
                    " of ",
                    args.cluster_name,
                    f": its GPUs were busy less than {IDLE_ALARM['threshold_ratio']:.0%} of the last hour"
                    " (graphics engine active, DCGM); the GPU-seconds paid for sit idle.",
                ),
                namespace=idle["namespace"],
                metric_name=idle["metric"],
                dimensions=pulumi.Output.from_input(args.cluster_name).apply(
                    lambda n, pool=pool.name: {"ClusterName": n, "NodePool": pool}
                ),
                statistic=idle["stat"],
                period=IDLE_ALARM["period_seconds"],
                evaluation_periods=IDLE_ALARM["evaluation_periods"],
                threshold=IDLE_ALARM["threshold_ratio"],
                comparison_operator="LessThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=topics,
                ok_actions=topics,
                opts=child,
            )
        self.dashboard_url = dashboard.dashboard_name.apply(lambda n: console_url(cfg.region, n))
        self.register_outputs({"dashboard_url": self.dashboard_url})
