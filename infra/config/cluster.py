"""Keys of the cluster (infra/cluster.py): region, name, Kubernetes version and upgrade policy, API endpoint,
control-plane logs, add-on versions; and the rules between them."""

from __future__ import annotations

import difflib
import re
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from infra.catalog.data import load_data
from infra.catalog.kubernetes_versions import (
    BOTTLEROCKET_NVIDIA_VARIANTS,
    KARPENTER_RANGES,
    NEWEST,
    SUPPORTED,
    minor,
    support_type_problem,
)
from infra.catalog.regions import sdk_description, sdk_regions
from infra.config.convert import (
    REGION,
    REGION_KEY,
    Bool,
    Int,
    Section,
    StringMap,
    Strings,
    check_choice,
    check_items,
    key,
    network,
)
from infra.config.errors import ConfigProblem, item_error

if TYPE_CHECKING:
    from infra.config.stack import StackConfig

SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = SUPPORTED  # infra/data/kubernetes_versions.json
SUPPORT_TYPES = ("STANDARD", "EXTENDED")
LOG_RETENTION_DAYS: tuple[int, ...] = tuple(load_data("aws_catalog")["cloudwatch_log_retention_days"])
# Pinned EKS add-on versions per Kubernetes version; the addonVersions key overrides single add-ons.
ADDON_VERSIONS: dict[str, dict[str, str]] = load_data("eks_addons")["versions"]
ADDONS: tuple[str, ...] = tuple(sorted({addon for versions in ADDON_VERSIONS.values() for addon in versions}))
_ADDON_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")
# Cluster name = prefix + "-" + 8 random characters. 38 keeps every derived name (IAM roles, EventBridge rules:
# 64 characters) valid; the character set is EKS's own.
CLUSTER_PREFIX_MAX = 38
_CLUSTER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


class ClusterKeys(Section):
    region: str = Field("us-west-2", alias=REGION_KEY, description="AWS region (the AWS provider's own key).")
    cluster_name_prefix: str = key(
        "eks-spot-gpu", "Cluster name prefix; the cluster is named <prefix>-<8 random characters>."
    )
    kubernetes_version: str = key(NEWEST, "EKS Kubernetes version (render prints its support window).")
    kubernetes_support_type: str = key(
        "STANDARD",
        "EKS upgrade policy: STANDARD (never billed for extended support; EKS upgrades the control plane at the end "
        "of standard support; refused once the version is past it) or EXTENDED (stays, billed $0.60 instead of $0.10 "
        "per cluster-hour).",
    )
    endpoint_public_access: Bool = key(True, "Expose the Kubernetes API endpoint publicly.")
    public_access_cidrs: Strings = key(("0.0.0.0/0",), "CIDRs allowed to reach the public API endpoint.")
    control_plane_log_retention_days: Int = key(30, "Retention in days of the control-plane log group.")
    addon_versions: StringMap = key(
        {}, "EKS add-on versions overriding the pins of infra/data/eks_addons.json (add-on name -> version)."
    )

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not REGION.match(v):
            raise ValueError("is not an AWS region name (like us-west-2)")
        known = sdk_regions()
        if known and v not in known:
            # A name of the right shape in no partition (us-east-7) is not a region: render would draw a cluster
            # in it. A region newer than the installed SDK is in a newer botocore.
            close = sorted(difflib.get_close_matches(v, list(known), n=3, cutoff=0.8))
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise ValueError(
                f"is not a region in the AWS partition data of {sdk_description()}; {hint}"
                "if it is a region newer than that, upgrade boto3 (uv lock --upgrade-package boto3)"
            )
        return v

    @field_validator("cluster_name_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _CLUSTER_PREFIX.match(v) or v.endswith("-"):
            raise ValueError("must start with a letter and hold only letters, digits and hyphens (not last)")
        if len(v) > CLUSTER_PREFIX_MAX:
            raise ValueError(f"is {len(v)} characters; at most {CLUSTER_PREFIX_MAX} keep derived names valid")
        return v

    @field_validator("kubernetes_version")
    @classmethod
    def _k8s(cls, v: str) -> str:
        return check_choice(v, SUPPORTED_KUBERNETES_VERSIONS, "is not supported")

    @field_validator("kubernetes_support_type")
    @classmethod
    def _support_type(cls, v: str) -> str:
        return check_choice(v, SUPPORT_TYPES, "is not an EKS support type", suggest=True)

    @field_validator("public_access_cidrs")
    @classmethod
    def _public_cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_items(v, lambda _, item: _cidr_problem(item), allow_empty=True)

    @field_validator("control_plane_log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        return check_choice(v, LOG_RETENTION_DAYS, "is not a CloudWatch retention")

    @field_validator("addon_versions")
    @classmethod
    def _addons(cls, v: dict[str, str]) -> dict[str, str]:
        for addon, version in v.items():
            if addon not in ADDONS:
                raise item_error(addon, version, f"is not an add-on this stack installs; allowed: {', '.join(ADDONS)}")
            if not isinstance(version, str) or not _ADDON_VERSION.match(version):
                raise item_error(addon, version, "is not an EKS add-on version like v1.12.4-eksbuild.1")
        return v

    def addon_version(self, addon: str) -> str:
        """The configured version of an EKS add-on, else its pin for this Kubernetes version."""
        return self.addon_versions.get(addon) or ADDON_VERSIONS[self.kubernetes_version][addon]


def _cidr_problem(item: str) -> str | None:
    try:
        network(item)
    except ValueError as error:
        return str(error)
    return None


def relation_problems(cfg: StackConfig) -> list[ConfigProblem]:
    return _version_problems(cfg) + _endpoint_problems(cfg)


def _version_problems(cfg: StackConfig) -> list[ConfigProblem]:
    """The Kubernetes version must be one the pinned Karpenter supports and the pinned Bottlerocket release builds an
    NVIDIA variant for (infra/data/kubernetes_versions.json); releases not in that file are not checked."""
    problems = []
    version = cfg.kubernetes_version
    karpenter = KARPENTER_RANGES.get(".".join(cfg.karpenter_version.split(".")[:2]))
    if karpenter and not minor(karpenter[0]) <= minor(version) <= minor(karpenter[1]):
        why = f"Karpenter {cfg.karpenter_version} supports Kubernetes {karpenter[0]} to {karpenter[1]}"
        problems.append(ConfigProblem("kubernetesVersion", version, why))
    variants = BOTTLEROCKET_NVIDIA_VARIANTS.get(cfg.bottlerocket_version)
    if variants and version not in variants:
        why = f"Bottlerocket {cfg.bottlerocket_version} builds NVIDIA variants for {', '.join(variants)} only"
        problems.append(ConfigProblem("kubernetesVersion", version, why))
    return problems


def dated_problems(cfg: StackConfig, today: date) -> list[ConfigProblem]:
    """Rules that depend on the date (infra/catalog/kubernetes_versions.py): STANDARD past the end of standard
    support. The program, render and preflight each check them with the date they run on."""
    why = support_type_problem(cfg.kubernetes_version, cfg.kubernetes_support_type, today)
    return [ConfigProblem("kubernetesSupportType", cfg.kubernetes_support_type, why)] if why else []


def _endpoint_problems(cfg: Any) -> list[ConfigProblem]:
    problems = []
    default_cidrs = ClusterKeys.model_fields["public_access_cidrs"].default
    if cfg.endpoint_public_access and not cfg.public_access_cidrs:
        problems.append(
            ConfigProblem("publicAccessCidrs", [], "needs at least one CIDR while endpointPublicAccess is true")
        )
    if not cfg.endpoint_public_access and cfg.public_access_cidrs not in ((), default_cidrs):
        problems.append(
            ConfigProblem(
                "publicAccessCidrs",
                list(cfg.public_access_cidrs),
                "has no effect while endpointPublicAccess is false; remove it or set endpointPublicAccess true",
            )
        )
    return problems
