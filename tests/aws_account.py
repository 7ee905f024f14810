"""A recorded AWS account for the preflight's pin checks (tools/preflight/pins.py), which moto does not implement
(EKS add-on versions and configuration schemas) or does not hold (Bottlerocket's public SSM parameters).

Every answer goes through botocore's Stubber (tests/test_preflight.py `_Client`), which checks it against the
service model. The account has what `pulumi up` needs: every pinned add-on version (infra/data/eks_addons.json) for
its Kubernetes version, every Bottlerocket image parameter, no cluster yet. Tests of a missing pin script the
answer that lacks it (Endpoint.answer / Endpoint.fail).

Configuration schemas: eks-node-monitoring-agent v1.7.0's is the upstream file the add-on is built from
(tests/data/eks-node-monitoring-agent-v1.7.0.configuration.schema.json: aws/eks-node-monitoring-agent tag v1.7.0,
commit c399089d, charts/configuration.schema.json, copied unchanged). No published schema of
amazon-cloudwatch-observability v6.6.0-eksbuild.1 is at hand, so that add-on's answer accepts any object: what it
checks is only the call, not the keys (README, Capacity preflight, says only the account's answer checks them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.config.cluster import ADDON_VERSIONS

DATA = Path(__file__).resolve().parent / "data"
NODE_MONITORING_SCHEMA = (DATA / "eks-node-monitoring-agent-v1.7.0.configuration.schema.json").read_text()
SCHEMAS = {("eks-node-monitoring-agent", "v1.7.0-eksbuild.1"): NODE_MONITORING_SCHEMA}
ANY_OBJECT = json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"})
BOTTLEROCKET_LATEST = "1.66.0-8a2c1f4e"  # `latest/image_version` values are "<version>-<commit>"


def addon_versions(params: dict[str, Any]) -> dict[str, Any]:
    """DescribeAddonVersions: the pinned versions of `addonName`, each compatible with the Kubernetes versions that
    pin it (the filter, when given, keeps only those of that version)."""
    addon, kubernetes = params["addonName"], params.get("kubernetesVersion")
    clusters: dict[str, list[str]] = {}
    for version, pins in ADDON_VERSIONS.items():
        if addon in pins and kubernetes in (None, version):
            clusters.setdefault(pins[addon], []).append(version)
    versions = [
        {
            "addonVersion": pinned,
            "architecture": ["amd64", "arm64"],
            "compatibilities": [
                {"clusterVersion": k, "platformVersions": ["*"], "defaultVersion": True} for k in kubernetes_versions
            ],
            "requiresConfiguration": False,
        }
        for pinned, kubernetes_versions in clusters.items()
    ]
    return {"addons": [{"addonName": addon, "type": "networking", "addonVersions": versions}] if versions else []}


def addon_configuration(params: dict[str, Any]) -> dict[str, Any]:
    key = (params["addonName"], params["addonVersion"])
    return {**params, "configurationSchema": SCHEMAS.get(key, ANY_OBJECT)}


def parameters(params: dict[str, Any]) -> dict[str, Any]:
    """GetParameters: every Bottlerocket image parameter exists."""
    found = [
        {
            "Name": name,
            "Type": "String",
            "Value": BOTTLEROCKET_LATEST if name.endswith("/image_version") else "ami-0123456789abcdef0",
        }
        for name in params["Names"]
    ]
    return {"Parameters": found}  # no InvalidParameters: the service model gives the list a minimum length of 1


RECORDED = {
    "describe_addon_versions": addon_versions,
    "describe_addon_configuration": addon_configuration,
    "get_parameters": parameters,
    "list_clusters": lambda _: {"clusters": []},
}
