"""Wires the components into one stack and returns its outputs."""

from __future__ import annotations

from datetime import date
from typing import Any

import pulumi
import pulumi_random as random

from infra.access import ClusterAccess, ClusterAccessArgs
from infra.admission import AdmissionPolicyArgs, GpuAdmissionPolicy
from infra.catalog.kubernetes_versions import STANDARD, VERSIONS, status_line
from infra.catalog.kubernetes_versions import today as current_date
from infra.cluster import Cluster, ClusterArgs
from infra.config import ConfigError, StackConfig
from infra.config.cluster import dated_problems
from infra.destroy_hook import cleanup_hook
from infra.efa import EfaDevicePlugin, EfaDevicePluginArgs, stack_efa_plugin
from infra.image_cache import ImageCache, ImageCacheArgs
from infra.karpenter import Karpenter, KarpenterArgs
from infra.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from infra.network import Network, NetworkArgs
from infra.node_pools import NodePools, NodePoolsArgs, placement_groups
from infra.observability import Observability, ObservabilityArgs
from infra.zones import discover_zones


def version_warning(cfg: StackConfig, today: date) -> str | None:
    """A version in extended support or past it: a warning, never an error here, so that `pulumi refresh` and
    `pulumi destroy --run-program` still run on such a stack (render refuses an ended version)."""
    if VERSIONS[cfg.kubernetes_version].status(today) == STANDARD:
        return None
    return status_line(cfg.kubernetes_version, today, cfg.kubernetes_support_type).removeprefix("warning: ")


def build_stack(cfg: StackConfig, today: date | None = None) -> dict[str, Any]:
    """Register every resource of the stack; returns the stack outputs (name -> value)."""
    today = today or current_date()
    # STANDARD past the end of standard support: EKS would refuse the update; refused here first, naming the key.
    problems = dated_problems(cfg, today)
    if problems:
        raise ConfigError(problems)
    warning = version_warning(cfg, today)
    if warning:
        pulumi.log.warn(warning)
    # First, before any resource: a pinned zone that the region lacks is a config error (names availabilityZones[i]).
    zones = discover_zones(cfg)
    # The original's naming: prefix + short random suffix, so several stacks can share an account.
    suffix = random.RandomString("cluster-suffix", length=8, special=False, upper=False)
    cluster_name = suffix.result.apply(lambda s: f"{cfg.cluster_name_prefix}-{s}")

    network = Network(
        "network",
        NetworkArgs(
            cluster_name=cluster_name,
            vpc_cidr=cfg.vpc_cidr,
            region=cfg.region,
            zones=zones,
            ecr_interface_endpoints=cfg.ecr_interface_endpoints,
        ),
    )
    cluster = Cluster("cluster", ClusterArgs(cluster_name=cluster_name, config=cfg, network=network))
    ClusterAccess("access", ClusterAccessArgs(cluster=cluster, config=cfg))  # clusterAdmins, clusterViewers, ...
    groups = placement_groups(cfg, cluster_name)  # gpuPools[i].placementGroup
    teardown = teardown_anchor(cluster, cfg.region, after=list(groups.values()))
    karpenter = Karpenter(
        "karpenter", KarpenterArgs(cluster=cluster, config=cfg, teardown=teardown, cluster_name=cluster_name)
    )
    NodePools(
        "node-pools",
        NodePoolsArgs(cluster=cluster, karpenter=karpenter, config=cfg, teardown=teardown, placement_groups=groups),
    )
    # Pods that would strand a GPU node are refused at creation (infra/admission.py).
    GpuAdmissionPolicy("gpu-admission", AdmissionPolicyArgs(cluster=cluster, config=cfg))
    if stack_efa_plugin(cfg):  # the device plugin that makes nodes of EFA types advertise vpc.amazonaws.com/efa
        EfaDevicePlugin("efa", EfaDevicePluginArgs(cluster=cluster, config=cfg))
    LoadBalancerController(
        "lb-controller",
        LoadBalancerControllerArgs(cluster=cluster, network=network, config=cfg, teardown=teardown),
    )
    # ECR pull-through cache (imageCache, imageCacheCredentials): upstream registry -> private ECR prefix.
    image_cache = (
        ImageCache(
            "image-cache",
            ImageCacheArgs(
                config=cfg,
                partition=cluster.partition,
                account_id=cluster.account_id,
                node_roles={"system": cluster.system_node_role, "karpenter": karpenter.node_role},
            ),
        )
        if cfg.image_cache
        else None
    )
    # CloudWatch add-on, dashboard and queue alarm (observability); off: none of it is registered.
    observability = (
        Observability(
            "observability",
            ObservabilityArgs(cluster=cluster, karpenter=karpenter, config=cfg, cluster_name=cluster_name),
        )
        if cfg.observability
        else None
    )

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
        "image_cache": image_cache.registries if image_cache else {},
        "dashboard_url": observability.dashboard_url if observability else None,
    }


def teardown_anchor(cluster: Cluster, region: str, after: list[pulumi.Resource] | None = None) -> random.RandomId:
    """The resource that carries the teardown cleanup (infra/destroy_hook.py) as a `before_delete` hook.

    Pulumi runs delete hooks on every delete of their resource, replacements included, so the hook sits on a
    resource whose deletion can only mean teardown: a local random id whose only inputs are the cluster's name and
    region (they change only when the cluster itself is replaced, and then that old cluster's leftovers must go).
    It depends on the EKS cluster, and both controller releases and every node pool and class depend on it, so
    `pulumi destroy` deletes the pools (Karpenter drains its nodes), then the controllers, then runs the cleanup,
    and only then deletes the cluster, whose security group the leftovers would otherwise keep in use. `after`: what
    must outlive the cleanup's wait for terminated instances (placement groups); `depends_on` is not a keeper, so
    adding one never replaces the anchor.
    """
    return random.RandomId(
        "teardown-cleanup",
        byte_length=4,
        keepers={"clusterName": cluster.name, "region": region},
        opts=pulumi.ResourceOptions(
            depends_on=after or [], hooks=pulumi.ResourceHookBinding(before_delete=[cleanup_hook()])
        ),
    )
