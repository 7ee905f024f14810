"""Configuration of the `eks-node-monitoring-agent` EKS add-on, whose conditions drive Karpenter's node repair.

On a GPU node the agent asks a DCGM host engine on localhost:5555 (aws/eks-node-monitoring-agent v1.7.0
monitors/nvidia/dcgm/dcgm_client.go: `config.Address = "localhost:5555"`); the engine is the add-on's own `dcgm-server`
DaemonSet (hostPort 5555). Without one, the agent reports `DCGMError`, Fatal for AcceleratedHardwareReady
(pkg/reasons/reasons.yaml), and Karpenter replaces the node after 10 minutes (karpenter-provider-aws v1.14.1
pkg/cloudprovider/cloudprovider.go RepairPolicies). The chart gives `dcgm-server` no tolerations and a frozen list of
instance types by default (charts/eks-node-monitoring-agent/values.yaml `dcgmAgent`), so the add-on gets an affinity
on what marks an NVIDIA node and a toleration of every taint (infra/data/node_monitoring.json, with sources).

The configuration is one constant, never derived from the stack: any change to it changes the DaemonSet's pod template
and rolls `dcgm-server` on every GPU node, and the agent latches `DCGMError` when its engine is away for longer than a
minute and never clears it while it runs (pkg/manager/node_exporter.go L109-141; aws/eks-node-monitoring-agent#266).
Adding or changing a pool must not do that. README "Node repair" has the chain and the add-on upgrade procedure.
"""

from __future__ import annotations

import copy
from typing import Any

from infra.catalog.data import load_data


def node_monitoring_configuration() -> dict[str, Any]:
    """The add-on's `configuration_values` (its schema's `dcgmAgent` keys, which EKS applies as the chart's values):
    the same for every stack, whatever its GPU pools."""
    return {"dcgmAgent": copy.deepcopy(load_data("node_monitoring")["dcgm_server"])}
