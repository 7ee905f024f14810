"""Wires the components into one stack and returns its outputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_random as random

from infra.cluster import Cluster, ClusterArgs
from infra.config import StackConfig
from infra.destroy_hook import cleanup_hook
from infra.karpenter import Karpenter, KarpenterArgs
from infra.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from infra.network import Network, NetworkArgs
from infra.node_pools import NodePools, NodePoolsArgs


def build_stack(cfg: StackConfig) -> dict[str, Any]:
    """Register every resource of the stack; returns the stack outputs (name -> value)."""
    # The original's naming: prefix + short random suffix, so several stacks can share an account.
    suffix = random.RandomString("cluster-suffix", length=8, special=False, upper=False)
    cluster_name = suffix.result.apply(lambda s: f"{cfg.cluster_name_prefix}-{s}")

    network = Network(
        "network",
        NetworkArgs(
            cluster_name=cluster_name,
            vpc_cidr=cfg.vpc_cidr,
            region=cfg.region,
            # `pulumi destroy --run-program` removes Karpenter's and the LB controller's leftovers first.
            private_subnet_hook=cleanup_hook(cfg.region),
        ),
    )
    cluster = Cluster("cluster", ClusterArgs(cluster_name=cluster_name, config=cfg, network=network))
    karpenter = Karpenter("karpenter", KarpenterArgs(cluster=cluster, config=cfg))
    NodePools("node-pools", NodePoolsArgs(cluster=cluster, karpenter=karpenter, config=cfg))
    LoadBalancerController("lb-controller", LoadBalancerControllerArgs(cluster=cluster, network=network, config=cfg))

    return {
        "cluster_name": cluster.name,
        "cluster_endpoint": cluster.endpoint,
        "cluster_version": cluster.version,
        "region": cfg.region,
        "configure_kubectl": pulumi.Output.concat(
            "aws eks update-kubeconfig --name ", cluster.name, " --region ", cfg.region
        ),
        "kubeconfig": cluster.kubeconfig,
        "vpc_id": network.vpc_id,
        "private_subnet_ids": network.private_subnet_ids,
        "karpenter_interruption_queue": karpenter.queue.name,
    }
