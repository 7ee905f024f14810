"""AWS Load Balancer Controller: IAM role for EKS Pod Identity and the Helm release, on the system nodes.

It turns Services of type LoadBalancer (annotated `aws-load-balancer-type: external`) into NLBs and Ingresses of
class `alb` into ALBs, in the subnets tagged `kubernetes.io/role/elb` (public) or `.../internal-elb` (private).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.cluster import Cluster
from infra.config import StackConfig
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR
from infra.network import Network
from infra.policies import pod_identity_trust_policy, render_policy

CHART = "aws-load-balancer-controller"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
RELEASE_NAME = "aws-load-balancer-controller"
NAMESPACE = "kube-system"
# Pinned: the chart would otherwise derive it from the release name, and Pod Identity binds to this exact name.
SERVICE_ACCOUNT = "aws-load-balancer-controller"
# The permissions of the controller's own iam_policy.json for the chart version in `StackConfig.lb_controller_version`
# (a Literal of the versions whose policy is in policies/: that Literal ties chart and policy versions together).
POLICY_FILE = "aws-load-balancer-controller.json"
REPLICAS = 2


@dataclass(frozen=True)
class LoadBalancerControllerArgs:
    cluster: Cluster
    network: Network
    config: StackConfig
    teardown: pulumi.Resource
    """Carries the teardown cleanup hook; the release depends on it, so it is deleted before the cleanup runs."""


class LoadBalancerController(pulumi.ComponentResource):
    """IAM role and policy, Pod Identity association and the controller's Helm release."""

    role_arn: pulumi.Output[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: LoadBalancerControllerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:LoadBalancerController", name, None, opts)
        cluster, cfg = args.cluster, args.config
        child = pulumi.ResourceOptions(parent=self)

        role = aws.iam.Role(f"{name}-role", assume_role_policy=pod_identity_trust_policy(), opts=child)
        # A managed policy (not inline): the document (~5.2k characters) fits its 6,144 limit, and inline policies
        # share one 10,240-character budget per role.
        policy = aws.iam.Policy(
            f"{name}-policy",
            description="AWS Load Balancer Controller (upstream iam_policy.json of the deployed chart version)",
            policy=render_policy(POLICY_FILE, partition=cluster.partition),
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(f"{name}-policy", role=role.name, policy_arn=policy.arn, opts=child)
        association = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=role.arn,
            opts=child,
        )

        self.release = k8s.helm.v3.Release(
            f"{name}-chart",
            name=RELEASE_NAME,
            chart=CHART,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            version=cfg.lb_controller_version,
            namespace=NAMESPACE,
            values={
                "clusterName": cluster.name,
                # Always explicit: nodes allow one IMDS hop, so the pods cannot discover region and VPC themselves.
                "region": cfg.region,
                "vpcId": args.network.vpc_id,
                "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
                "replicaCount": REPLICAS,
                "nodeSelector": SYSTEM_NODE_SELECTOR,
                # The Service mutator webhook (failurePolicy Fail) rejects every new Service in the cluster until the
                # controller is ready (aws-load-balancer-controller#4140), which breaks charts installed alongside it.
                # Without it the controller handles Services annotated `aws-load-balancer-type: external`.
                "enableServiceMutatorWebhook": False,
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=cluster.k8s_provider,
                # Credentials must be in place before the first pod starts: Pod Identity injects them only at
                # pod creation, through the agent add-on.
                depends_on=[
                    args.teardown,
                    cluster.system_node_group,
                    cluster.addons["eks-pod-identity-agent"],
                    cluster.addons["coredns"],  # the controller resolves AWS endpoints at start
                    association,
                    attachment,
                ],
            ),
        )

        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn, "release_name": self.release.name})
