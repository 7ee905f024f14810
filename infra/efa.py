"""The EFA device plugin, on every GPU node whose instance type has EFA (README, Training pools; "Nodes that never
start").

Bottlerocket ships EFA's host side but not the device plugin (EKS user guide, "Manage EFA devices on Amazon EKS":
all Bottlerocket AMIs "include the host-level components" for EFA, not the plugin), so nodes only advertise
`vpc.amazonaws.com/efa` once the aws/eks-charts `aws-efa-k8s-device-plugin` DaemonSet runs there. Three chart
defaults do not fit (chart v0.5.30 values.yaml):

- `image.repository` is the us-west-2 registry: in-region nodes pull from their region's EKS registry account
  (infra/data/eks_image_registries.json);
- `tolerations: []` (the template adds only CriticalAddonsOnly): every GPU node is tainted, so the plugin tolerates
  each taint of the EFA pools;
- `tolerations: []` is widened to every taint of the pools that admit an EFA type, not only EFA pools;
- the node affinity is built from `supportedInstanceLabels` (templates/daemonset.yaml: one `In` term per key over
  one value list; the default lists 303 instance types): keys the EFA pools' label and the instance type, values
  `true` and the EFA types the stack's GPU pools admit (infra/gpu/stranding.py efa_plugin). Karpenter attaches EFA
  interfaces to any node whose pods request `vpc.amazonaws.com/efa`, whatever its pool, so a pod asking for EFA on a
  pool of EFA types that is not an EFA pool is served instead of waiting on a node that never initializes; an EFA
  pool's nodes get the plugin by label even for a type newer than the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.catalog.data import load_data
from infra.cluster import Cluster
from infra.config import StackConfig
from infra.gpu.stranding import EfaPlugin, efa_plugin

CHART = "aws-efa-k8s-device-plugin"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
CHART_VERSION = "v0.5.30"  # app v0.5.20; the archive in ../shared/reference/charts is this version
RELEASE_NAME = "aws-efa-k8s-device-plugin"
NAMESPACE = "kube-system"
IMAGE_PATH = "eks/aws-efa-k8s-device-plugin"
REGISTRY_ACCOUNTS: dict[str, str] = load_data("eks_image_registries")["accounts"]


def stack_efa_plugin(cfg: StackConfig) -> EfaPlugin | None:
    """Where the plugin runs in this stack; None: no GPU pool admits a type with EFA, so no release."""
    return efa_plugin(cfg.effective_gpu_pools)


def image_repository(region: str) -> str:
    return f"{REGISTRY_ACCOUNTS[region]}.dkr.ecr.{region}.amazonaws.com/{IMAGE_PATH}"


def device_plugin_values(cfg: StackConfig) -> dict[str, Any]:
    plugin = stack_efa_plugin(cfg)
    assert plugin is not None, "no GPU pool admits an EFA type: the stack has no EFA device plugin"
    return {
        "image": {"repository": image_repository(cfg.region)},
        "tolerations": list(plugin.tolerations),
        "supportedInstanceLabels": plugin.values_for_chart(),
    }


@dataclass(frozen=True)
class EfaDevicePluginArgs:
    cluster: Cluster
    config: StackConfig


class EfaDevicePlugin(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: EfaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:EfaDevicePlugin", name, None, opts)
        cluster = args.cluster
        self.release = k8s.helm.v3.Release(
            f"{name}-chart",
            name=RELEASE_NAME,
            chart=CHART,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            version=CHART_VERSION,
            namespace=NAMESPACE,
            values=device_plugin_values(args.config),
            # A DaemonSet with no EFA node yet is ready at once: this release waits only for the API server.
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.k8s_provider, depends_on=[cluster.system_node_group]
            ),
        )
        self.register_outputs({"release_name": self.release.name})
