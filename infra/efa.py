"""The EFA device plugin, on the nodes of EFA pools only (README, Training pools).

Bottlerocket ships EFA's host side but not the device plugin (EKS user guide, "Manage EFA devices on Amazon EKS":
all Bottlerocket AMIs "include the host-level components" for EFA, not the plugin), so nodes only advertise
`vpc.amazonaws.com/efa` once the aws/eks-charts `aws-efa-k8s-device-plugin` DaemonSet runs there. Three chart
defaults do not fit (chart v0.5.30 values.yaml):

- `image.repository` is the us-west-2 registry: in-region nodes pull from their region's EKS registry account
  (infra/data/eks_image_registries.json);
- `tolerations: []` (the template adds only CriticalAddonsOnly): every GPU node is tainted, so the plugin tolerates
  each taint of the EFA pools;
- the node affinity is built from `supportedInstanceLabels` (templates/daemonset.yaml: one `In` term over its keys
  and 303 instance types): pointed at the EFA pools' label instead, the plugin runs exactly where pods may ask for
  EFA and nowhere else, and a new instance type needs no chart change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.catalog.data import load_data
from infra.cluster import Cluster
from infra.config import GpuPool, StackConfig
from infra.gpu.pools import EFA_POOL_LABEL, exists_tolerations

CHART = "aws-efa-k8s-device-plugin"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
CHART_VERSION = "v0.5.30"  # app v0.5.20; the archive in ../shared/reference/charts is this version
RELEASE_NAME = "aws-efa-k8s-device-plugin"
NAMESPACE = "kube-system"
IMAGE_PATH = "eks/aws-efa-k8s-device-plugin"
REGISTRY_ACCOUNTS: dict[str, str] = load_data("eks_image_registries")["accounts"]


def efa_pools(cfg: StackConfig) -> list[GpuPool]:
    return [pool for pool in cfg.effective_gpu_pools if pool.efa]


def image_repository(region: str) -> str:
    return f"{REGISTRY_ACCOUNTS[region]}.dkr.ecr.{region}.amazonaws.com/{IMAGE_PATH}"


def device_plugin_values(cfg: StackConfig) -> dict[str, Any]:
    return {
        "image": {"repository": image_repository(cfg.region)},
        "tolerations": exists_tolerations(efa_pools(cfg)),
        "supportedInstanceLabels": {"keys": [EFA_POOL_LABEL], "values": ["true"]},
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
