"""Every EKS add-on the stack installs, with the version and the `configuration_values` it sends: one plan that the
program (infra/cluster.py, infra/observability.py) and the preflight (tools/preflight/pins.py) both read, so the
preflight validates exactly what `pulumi up` would send. Pure: no Pulumi import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.cloudwatch.addon import ADDON_NAME as OBSERVABILITY_ADDON
from infra.cloudwatch.addon import observability_configuration
from infra.config import StackConfig
from infra.node_health import node_monitoring_configuration

# Add-ons the nodes need before they can become Ready; coredns (a Deployment) waits for the node group.
ADDONS_BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
NODE_MONITORING_ADDON = "eks-node-monitoring-agent"


@dataclass(frozen=True)
class AddonPlan:
    name: str
    version: str
    configuration: dict[str, Any] | None  # the configuration values sent; None sends none (the add-on's defaults)
    built_by: str  # the function that builds the configuration, for messages that name it


def addon_plan(cfg: StackConfig, cluster_name: str) -> list[AddonPlan]:
    """`cluster_name` is the cluster's real name (`<clusterNamePrefix>-<random suffix>`): the observability add-on's
    scraping agent carries it. Before the first deploy the suffix does not exist yet (see `stand_in_cluster_name`)."""
    plans = [AddonPlan(name, cfg.addon_version(name), None, "") for name in (*ADDONS_BEFORE_NODES, "coredns")]
    plans.append(
        AddonPlan(
            NODE_MONITORING_ADDON,
            cfg.addon_version(NODE_MONITORING_ADDON),
            node_monitoring_configuration(),
            "infra/node_health.py node_monitoring_configuration",
        )
    )
    if cfg.observability:
        plans.append(
            AddonPlan(
                OBSERVABILITY_ADDON,
                cfg.addon_version(OBSERVABILITY_ADDON),
                observability_configuration(cfg, cluster_name),
                "infra/cloudwatch/addon.py observability_configuration",
            )
        )
    return plans


def stand_in_cluster_name(cfg: StackConfig) -> str:
    """A name of the real one's shape (infra/stack.py: prefix, '-', eight lowercase letters or digits) for checking
    the configuration before the cluster exists: the schema types the name as a string, whatever its letters."""
    return f"{cfg.cluster_name_prefix}-00000000"
