"""Configuration of the `amazon-cloudwatch-observability` EKS add-on: Container Insights with enhanced observability,
and nothing that would run a second DCGM host engine on a GPU node.

One DCGM per GPU node. The node monitoring agent (infra/node_health.py) runs its own host engine, `dcgm-server`,
on every GPU node, and at the pinned v1.7.0 it cannot be switched off or pointed elsewhere
(aws/eks-node-monitoring-agent v1.7.0 charts/eks-node-monitoring-agent/templates/dcgm-daemonset.yaml renders
unconditionally; the opt-in `dcgmAgent.enabled` / `nodeAgent.dcgmAddress` of commit b09e3b8 is in no release). The
add-on's DCGM exporter starts an embedded host engine of its own (NVIDIA dcgm-exporter docs: "By default, the
exporter initializes an embedded DCGM host engine inside its own process"), and the add-on offers no value to
connect it to another: its DcgmExporter template sets only DCGM_EXPORTER_KUBERNETES, _LISTEN, _INTERVAL and
NODE_NAME (aws-observability/helm-charts charts/amazon-cloudwatch-observability/templates/linux/
dcgm-exporter-daemonset.yaml), and `dcgmExporter.arguments` is read by no template. Two engines on one node is the
failure of aws/containers-roadmap#2763 (the agent reports AcceleratedHardwareReady=False, Karpenter repairs the
node away). So the supported choice at these versions is `dcgmExporter.enabled: false` (values.yaml, flag added in
add-on v4.3.0): node repair keeps its engine; the DCGM-based `node_gpu_utilization` family is not collected.
"""

from __future__ import annotations

from typing import Any

from infra.catalog.data import load_data
from infra.cloudwatch.dcgm_exporter import scraping_agents
from infra.config import StackConfig
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR

OBSERVABILITY = load_data("observability")
ADDON: dict[str, str] = OBSERVABILITY["addon"]
ADDON_NAME = ADDON["name"]


def observability_configuration(cfg: StackConfig, cluster_name: str) -> dict[str, Any]:
    """The add-on's `configuration_values` (chart values; keys of the add-on's configuration schema).

    Left at the chart's defaults on purpose: `tolerations` (`[{operator: Exists}]`, values.yaml "Provide default
    tolerations"), so the agent reaches every tainted GPU node, and the agent configuration (enhanced observability,
    accelerated_compute_metrics on), which produces the node_gpu_* allocation metrics the dashboard reads.
    """
    return {
        # The metrics mode, explicit rather than left to the pinned build's defaults: Container Insights with enhanced
        # observability (CloudWatch metrics in ContainerInsights, which the dashboard and alarms read), not the
        # OpenTelemetry mode (PromQL; README, Observability says why). Both keys are in the add-on's schema.
        "containerInsights": {"enabled": True},
        "otelContainerInsights": {"enabled": False},
        # One DCGM per GPU node: the node monitoring agent's dcgm-server is the one (module docstring).
        "dcgmExporter": {"enabled": False},
        # GPU pools are NVIDIA only (infra/catalog/selection.py); there is no Neuron device to monitor.
        "neuronMonitor": {"enabled": False},
        # Application Signals is APM for instrumented services, billed per signal; with autoMonitor it would inject
        # language agents into (and restart) workloads. Off: a platform default must not change the user's pods.
        "applicationSignals": {"enabled": False},
        "manager": {"applicationSignals": {"autoMonitor": {"monitorAllServices": False}}},
        # Fluent Bit ships every container's stdout to CloudWatch Logs at $0.50/GB: opt-in.
        "containerLogs": {"enabled": cfg.observability_container_logs},
        # The chart's two agents plus one scraping the remote-mode dcgm-exporter (infra/cloudwatch/dcgm_exporter.py):
        # GPU utilization from the node's one DCGM engine. The add-on takes the chart's values ("The add-on and the
        # Helm chart use the same configuration values", CloudWatch user guide, eks-observability-addon-configure);
        # `agents` and `agent.prometheus.config` are in the chart's values.yaml from 4.3.0 to 6.4.0.
        "agents": scraping_agents(cluster_name, SYSTEM_NODE_SELECTOR),
    }
