"""Configuration of the `eks-node-monitoring-agent` EKS add-on, whose conditions drive Karpenter's node repair.

On a GPU node the agent asks a DCGM host engine on localhost:5555 (aws/eks-node-monitoring-agent v1.7.0
monitors/nvidia/dcgm/dcgm_client.go: `config.Address = "localhost:5555"`); the engine is the add-on's own `dcgm-server`
DaemonSet (hostPort 5555). Without one, the agent reports `DCGMError`, Fatal for AcceleratedHardwareReady
(pkg/reasons/reasons.yaml), and Karpenter replaces the node after 10 minutes (karpenter-provider-aws v1.14.1
pkg/cloudprovider/cloudprovider.go RepairPolicies). The chart gives `dcgm-server` no tolerations by default
(charts/eks-node-monitoring-agent/values.yaml `dcgmAgent.tolerations: []`), and every GPU node is tainted, so the
add-on gets tolerations for every taint of every GPU pool. README "Node repair" has the whole chain with lines.
"""

from __future__ import annotations

from typing import Any

from infra.config import StackConfig
from infra.gpu.pools import exists_tolerations


def dcgm_server_tolerations(cfg: StackConfig) -> list[dict[str, str]]:
    """One toleration per taint key and effect of the GPU pools (Exists: any value of that key)."""
    return exists_tolerations(cfg.effective_gpu_pools)


def node_monitoring_configuration(cfg: StackConfig) -> dict[str, Any]:
    """The add-on's `configuration_values`. Keys from its schema (charts/configuration.schema.json: `dcgmAgent` ->
    `tolerations`, an array of objects; additionalProperties false), which EKS applies as the chart's values."""
    return {"dcgmAgent": {"tolerations": dcgm_server_tolerations(cfg)}}
