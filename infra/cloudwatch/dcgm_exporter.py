"""GPU utilization without a second DCGM engine: NVIDIA's dcgm-exporter in remote mode, scraped into CloudWatch.

One engine, two clients. The node monitoring agent's `dcgm-server` runs `nv-hostengine -n -b ALL` with hostPort 5555
(aws/eks-node-monitoring-agent v1.7.0 charts/eks-node-monitoring-agent/templates/dcgm-daemonset.yaml), and the agent,
on the host network, is its client at localhost:5555. The exporter runs on the host network too and gets
`-r localhost:5555`: with that flag it starts no engine of its own (NVIDIA/dcgm-exporter 4.5.3-4.8.2 pkg/cmd/app.go
L1096 `UseRemoteHE: c.IsSet(CLIRemoteHEInfo)`; internal/pkg/dcgmprovider/dcgm.go L69-71 then calls
`dcgm.Init(dcgm.Standalone, config.RemoteHEInfo, "0")`, not `dcgm.Init(dcgm.Embedded)` of L91). On exit it only
disconnects (NVIDIA/go-dcgm ec245c09, the exporter's go.mod pin, pkg/dcgm/admin.go shutdown(): `case Standalone:
err = disconnectStandalone()` -> `dcgmDisconnect`), so an exporter restart leaves the engine and the agent's
connection alone. README "GPU utilization" has the whole argument.

Scheduling is the `dcgm-server` rule itself (infra/data/node_monitoring.json, read by infra/node_health.py too): an
NVIDIA node (`karpenter.k8s.aws/instance-gpu-manufacturer In [nvidia]`, amd64, the only architecture GPU pools use:
infra/catalog/selection.py ARCH), every taint tolerated. The exporter requests no GPU: it reads through the engine.

Into CloudWatch through the add-on's own chart values (one more CloudWatch agent, `agents`, in deployment mode with a
Prometheus scrape and an EMF metric declaration); README "GPU utilization" says why not the managed collector.
"""

from __future__ import annotations

from typing import Any

from infra.catalog.data import load_data

OBSERVABILITY = load_data("observability")
EXPORTER: dict[str, Any] = OBSERVABILITY["dcgm_exporter"]
IDLE_ALARM: dict[str, Any] = OBSERVABILITY["idle_alarm"]
METRIC_NAMESPACE = "ContainerInsights/Prometheus"
DECLARED: dict[str, list[list[str]]] = OBSERVABILITY["documented_metrics"][METRIC_NAMESPACE]["metrics"]
SCRAPE_JOB = "dcgm-exporter"
SCRAPE_AGENT = "cloudwatch-agent-dcgm"
# Where the operator puts an agent's `prometheus.config` and where the agent's Prometheus input reads it (the
# CloudWatch user guide's EKS samples, ContainerInsights-Prometheus-Setup-configure: `prometheus_config_path`).
PROMETHEUS_CONFIG_PATH = "/etc/prometheusconfig/prometheus.yaml"

# The node labels carried into every series (Prometheus kubernetes_sd `attach_metadata.node` exposes a pod's node
# labels as __meta_kubernetes_node_label_<sanitized name>): CloudWatch dimension -> node label.
NODE_LABEL_DIMENSIONS = {
    "NodePool": "karpenter.sh/nodepool",
    "CapacityType": "karpenter.sh/capacity-type",
    "InstanceType": "node.kubernetes.io/instance-type",
}

# The very rule the node monitoring agent's `dcgm-server` is scheduled by (infra/data/node_monitoring.json): the
# exporter is a client of that engine, so it runs exactly where the engine runs. Every taint is tolerated, as the
# agent's own DaemonSet does: an exporter kept off a node would show its GPUs as not reporting, not as idle.
_DCGM_SERVER = load_data("node_monitoring")["dcgm_server"]
NVIDIA_NODE_AFFINITY: dict[str, Any] = _DCGM_SERVER["affinity"]
TOLERATE_EVERYTHING: list[dict[str, str]] = _DCGM_SERVER["tolerations"]


def exporter_values() -> dict[str, Any]:
    """The dcgm-exporter chart's values (keys of its values.yaml at 4.8.2)."""
    return {
        "image": {"tag": EXPORTER["image_tag"]},
        # `-f` keeps the chart's counters file (its ConfigMap); `-r` makes the agent's engine the only one.
        "arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv", "-r", EXPORTER["host_engine"]],
        # localhost:5555 is the engine's hostPort as seen from the host network, where the agent reaches it too.
        "hostNetwork": True,
        "affinity": NVIDIA_NODE_AFFINITY,
        "tolerations": TOLERATE_EVERYTHING,
        # No nvidia.com/gpu request: the chart sets none, and a GPU request would take a GPU from the workloads.
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "512Mi"}},
        # No Prometheus operator in the cluster: its ServiceMonitor CRD would be missing and the install would fail.
        "serviceMonitor": {"enabled": False},
        # The CloudWatch agent scrapes the pods directly (pod discovery); no Service needed.
        "service": {"enable": False},
        # Per-pod labels come from the kubelet's pod-resources socket (the chart always mounts `kubeletPath`);
        # pod *labels* would need cluster-wide pod read and multiply series: off.
        "kubernetes": {"enablePodLabels": False, "enablePodUID": False},
    }


def _label(node_label: str) -> str:
    return "__meta_kubernetes_node_label_" + "".join(c if c.isalnum() else "_" for c in node_label)


def scrape_config() -> dict[str, Any]:
    """Prometheus configuration of the scraping agent: the exporter pods, with their node's pool labels."""
    relabel = [
        {
            "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "regex": EXPORTER["chart"],
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "NodeName"},
        *(
            {"source_labels": [_label(node_label)], "target_label": dimension}
            for dimension, node_label in NODE_LABEL_DIMENSIONS.items()
        ),
    ]
    interval = f"{EXPORTER['scrape_interval_seconds']}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": "10s"},
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "namespaces": {"names": [EXPORTER["namespace"]]},
                        "attach_metadata": {"node": True},
                    }
                ],
                "relabel_configs": relabel,
                # Only the fields the dashboard draws reach CloudWatch (each kept field is billed as metrics).
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "regex": "|".join(sorted(DECLARED)), "action": "keep"}
                ],
            }
        ],
    }


def agent_config(cluster_name: str) -> dict[str, Any]:
    """The scraping agent's CloudWatch agent configuration: the EMF declaration that turns series into metrics."""
    return {
        "logs": {
            "metrics_collected": {
                "prometheus": {
                    "cluster_name": cluster_name,
                    "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
                    "emf_processor": {
                        "metric_namespace": METRIC_NAMESPACE,
                        "metric_declaration": [
                            {
                                "source_labels": ["job"],
                                "label_matcher": f"^{SCRAPE_JOB}$",
                                "dimensions": [list(d) for d in next(iter(DECLARED.values()))],
                                "metric_selectors": [f"^{name}$" for name in sorted(DECLARED)],
                            }
                        ],
                    },
                }
            }
        }
    }


def scraping_agents(cluster_name: str, system_node_selector: dict[str, str]) -> list[dict[str, Any]]:
    """The add-on's `agents` list: the chart's two default entries (values.yaml), then the GPU scraper.

    Setting `agents` replaces the chart's list, so its defaults are repeated. One replica in deployment mode on the
    system nodes: one scrape per exporter, no duplicate series, and not on a Spot GPU node.
    """
    return [
        {"name": "cloudwatch-agent"},
        {"name": "cloudwatch-agent-cluster-scraper", "mode": "deployment", "config": "default"},
        {
            "name": SCRAPE_AGENT,
            "mode": "deployment",
            "replicas": 1,
            "nodeSelector": {"kubernetes.io/os": "linux", **system_node_selector},
            "config": agent_config(cluster_name),
            "prometheus": {"config": scrape_config()},
        },
    ]


def metric_count(nodes: int, instance_types: int, pools: int, capacity_types: int = 2) -> int:
    """CloudWatch metrics the declaration creates: one per field and value combination of each dimension set."""
    per_set = {"NodeName": nodes, "InstanceType": instance_types, "NodePool": pools}
    combinations = 0
    for dimensions in next(iter(DECLARED.values())):
        count = 1
        for dimension in dimensions:
            count *= capacity_types if dimension == "CapacityType" else per_set.get(dimension, 1)
        combinations += count
    return len(DECLARED) * combinations


def monthly_cost_usd(nodes: int, gpus_per_node: int, instance_types: int, pools: int) -> float:
    """Upper bound for a month with `nodes` GPU nodes all month: metrics plus the EMF logs that carry them."""
    prices = OBSERVABILITY["prices"]
    metrics = metric_count(nodes, instance_types, pools) * prices["custom_metric_per_month_usd"]
    scrapes = 30 * 24 * 3600 / EXPORTER["scrape_interval_seconds"]
    gigabytes = nodes * gpus_per_node * scrapes * prices["emf_bytes_per_gpu_scrape"] / 1e9
    return round(metrics + gigabytes * prices["logs_ingestion_per_gb_usd"], 2)
