"""Stack configuration: the only module that reads Pulumi config.

`parse_config` turns the raw config map (strings, as Pulumi hands them to the program) into an immutable,
validated `StackConfig`, or raises one `ConfigError` that names every bad key, its value and what is allowed.
It runs before any resource is registered.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from infra.gpu.catalog import CATALOG as GPU_CATALOG
from infra.gpu.catalog import GPU_FAMILIES, GPU_NAMES, MAX_GPUS_PER_INSTANCE, matching_types
from infra.gpu.selection import ARCH, platform_requirements, selection_requirements
from infra.kubernetes_versions import BOTTLEROCKET_NVIDIA_VARIANTS, KARPENTER_RANGES, NEWEST, SUPPORTED, minor

PROJECT = "eks-gpu-spot"
REGION_KEY = "aws:region"

_CATALOG = json.loads((Path(__file__).parent / "data" / "aws_catalog.json").read_text())
SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = SUPPORTED  # infra/data/kubernetes_versions.json
SUPPORT_TYPES = ("STANDARD", "EXTENDED")
LOG_RETENTION_DAYS: tuple[int, ...] = tuple(_CATALOG["cloudwatch_log_retention_days"])
# Pinned EKS add-on versions per Kubernetes version; the addonVersions key overrides single add-ons.
ADDON_VERSIONS: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "data" / "eks_addons.json").read_text()
)["versions"]
ADDONS: tuple[str, ...] = tuple(sorted({addon for versions in ADDON_VERSIONS.values() for addon in versions}))
_ADDON_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")
# ECR pull-through cache: ECR prefix -> upstream registry and whether it needs a Secrets Manager secret.
_IMAGE_CACHE = json.loads((Path(__file__).parent / "data" / "image_cache.json").read_text())
IMAGE_CACHE_REGISTRIES: dict[str, dict[str, Any]] = _IMAGE_CACHE["registries"]
IMAGE_CACHE_SECRET_PREFIX: str = _IMAGE_CACHE["secret_name_prefix"]
CREDENTIALED_REGISTRIES: tuple[str, ...] = tuple(p for p, r in IMAGE_CACHE_REGISTRIES.items() if r["credentials"])
# Secrets Manager secret names: 1-512 of letters, digits and /_+=.@- (ECR requires the ecr-pullthroughcache/ prefix).
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")

# Cluster name = prefix + "-" + 8 random characters. 38 keeps every derived name (IAM roles, EventBridge rules:
# 64 characters) valid; the character set is EKS's own.
CLUSTER_PREFIX_MAX = 38
_CLUSTER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_INSTANCE_TYPE = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)\."
    r"(?:nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(?:-[1-9][0-9]*xl)?)$"
)
# Graviton families carry a "g" after the generation digit (m7g, c6gn, r6gd, t4g, im4gn).
_GRAVITON_FAMILY = re.compile(r"^[a-z]+[0-9]+[a-z]*g[a-z]*$")
_REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_DURATION = re.compile(r"^(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?$")
_CHUNK_SIZE = re.compile(r"^(?:unlimited|[1-9][0-9]*(?:b|kb|kib|mb|mib|gb|gib)?)$")
_SNAPSHOT_ID = re.compile(r"^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_INT = re.compile(r"^[+-]?[0-9]+$")
_ZONE_ID = re.compile(r"^[a-z]{3,}[0-9]+-az[0-9]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_RESERVATION_ID = re.compile(r"^cr-[0-9a-z]+$")
# EKS access entries (clusterAdmins, ...): IAM role and user names and path parts (IAM's own character set).
IAM_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
_IAM_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_IAM_PATH_PART = re.compile(r"^[A-Za-z0-9+=,.@_-]+$")
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# Bottlerocket settings.kubelet-device-plugins.nvidia.mig.profile: "<gpu model>.<memory>gb" -> a partition count
# (1, 2, 3, 4, 7) or a MIG profile like 1g.10gb (bottlerocket settings docs, 1.34.x kubelet-device-plugins).
_MIG_GPU = re.compile(r"^([a-z])(\d+)\.(\d+)gb$")
_MIG_PROFILE = re.compile(r"^(?:[12347]|[0-9]g\.\d+gb)$")
CAPACITY_TYPES = ("spot", "on-demand", "reserved")
LEGACY_GPU_POOL = "gpu-spot"  # the seed's single GPU pool, kept when gpuPools is not set
MAX_LIST_ITEMS = 50


class ConfigProblem(NamedTuple):
    key: str
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}: {self.reason}"


class ConfigError(ValueError):
    """Invalid stack configuration. One message, one line per bad key."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = tuple(problems)
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} {noun}):\n{lines}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.problems)


# --- parsing the strings Pulumi hands to the program ---------------------------------------------------------------


def _as_list(value: Any) -> Any:
    """Accept a JSON list (`'["a","b"]'`, also what `--path` config arrives as) or a comma list (`a,b`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            raise ValueError('is not a valid JSON list; write ["a","b"] or a comma list a,b') from None
        if not isinstance(parsed, list):
            raise ValueError("must be a list")
        return parsed
    return [part.strip() for part in text.split(",")] if text else []


def _as_map(value: Any) -> Any:
    """Accept a mapping: structured YAML (arrives as a JSON object string) or a JSON object string."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value) if value.strip() else {}
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError('must be a mapping: structured YAML, or a JSON object like {"name": "value"}')
    return parsed


def _as_int(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and not _INT.match(value.strip())):
        raise ValueError("must be a whole number")
    return int(value.strip()) if isinstance(value, str) else value


def _as_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


Strings = Annotated[tuple[str, ...], BeforeValidator(_as_list)]
StringMap = Annotated[dict[str, str], BeforeValidator(_as_map)]
StringListMap = Annotated[dict[str, Strings], BeforeValidator(_as_map)]
Int = Annotated[int, BeforeValidator(_as_int)]
Bool = Annotated[bool, BeforeValidator(_as_bool)]


def item_error(at: int | str | tuple[int | str, ...], item: Any, reason: str) -> PydanticCustomError:
    """An error about one item of a list (`key[index]`), one entry of a map (`key.name`) or a path of both
    (`key[0].name`), with that item's value."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (at if isinstance(at, tuple) else (at,)))
    return PydanticCustomError("item", "{reason}", {"where": where, "item": item, "reason": reason})


def _key(default: Any, description: str, **constraints: Any) -> Any:
    return Field(default, description=description, **constraints)


# --- the model -----------------------------------------------------------------------------------------------------


class GpuPool(BaseModel):
    """One item of `gpuPools`: a Karpenter NodePool for GPU work. Keys are camelCase, as in the stack file."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str
    # Selection: a type list, or any combination of GPU attributes.
    instance_types: Strings = ()
    gpu_names: Strings = ()
    gpu_count_min: Int | None = None
    gpu_count_max: Int | None = None
    gpu_memory_min_gib: Int | None = Field(None, alias="gpuMemoryMinGiB")
    families: Strings = ()
    # Capacity.
    capacity_types: Strings = ("spot",)
    capacity_reservation_ids: Strings = ()
    capacity_reservation_tags: StringMap = {}
    gpu_limit: Int = 16
    weight: Int | None = None
    consolidate_after: str | None = None
    # GPU sharing (Bottlerocket's NVIDIA device plugin).
    time_slicing_replicas: Int | None = None
    mig_profile: StringMap = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS_LABEL.match(v) or v == "default":
            raise ValueError("must be a DNS label (lowercase letters, digits, '-'; at most 63) and not 'default'")
        return v

    @field_validator("instance_types")
    @classmethod
    def _types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            _check_gpu_type(i, item)
        return v

    @field_validator("gpu_names")
    @classmethod
    def _gpu_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            if item not in GPU_NAMES:
                raise item_error(i, item, f"is not a GPU name Karpenter reports; known: {', '.join(GPU_NAMES)}")
        return v

    @field_validator("families")
    @classmethod
    def _families(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            if item not in GPU_FAMILIES:
                raise item_error(i, item, f"is not an NVIDIA GPU family; known: {', '.join(GPU_FAMILIES)}")
        return v

    @field_validator("gpu_count_min", "gpu_count_max")
    @classmethod
    def _count(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= MAX_GPUS_PER_INSTANCE:
            raise ValueError(f"must be between 1 and {MAX_GPUS_PER_INSTANCE} GPUs per instance")
        return v

    @field_validator("gpu_memory_min_gib")
    @classmethod
    def _memory(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 1024:
            raise ValueError("must be the GiB per GPU as the GPU is sold, like 24 (L4, A10G) or 80 (H100)")
        return v

    @field_validator("capacity_types")
    @classmethod
    def _capacity(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v)
        for i, item in enumerate(v):
            if item not in CAPACITY_TYPES:
                raise item_error(i, item, f"is not a capacity type; allowed: {', '.join(CAPACITY_TYPES)}")
        return v

    @field_validator("capacity_reservation_ids")
    @classmethod
    def _reservations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            if not _RESERVATION_ID.match(item):
                raise item_error(i, item, "is not a capacity reservation id (cr- and lowercase letters or digits)")
        return v

    @field_validator("gpu_limit")
    @classmethod
    def _limit(cls, v: int) -> int:
        if not 1 <= v <= 100_000:
            raise ValueError("must be a positive number of GPUs")
        return v

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 100:
            raise ValueError("must be between 1 and 100 (Karpenter's NodePool weight)")
        return v

    @field_validator("consolidate_after")
    @classmethod
    def _consolidate(cls, v: str | None) -> str | None:
        return v if v is None else _check_consolidate_after(v)

    @field_validator("time_slicing_replicas")
    @classmethod
    def _replicas(cls, v: int | None) -> int | None:
        if v is not None and not 2 <= v <= 64:
            raise ValueError("must be between 2 and 64 (Bottlerocket time-slicing replicas per GPU)")
        return v

    @field_validator("mig_profile")
    @classmethod
    def _mig(cls, v: dict[str, str]) -> dict[str, str]:
        for gpu, profile in v.items():
            if not _MIG_GPU.match(gpu):
                raise item_error(gpu, profile, 'is not a "<gpu model>.<memory>gb" key like "h100.80gb"')
            if not isinstance(profile, str) or not _MIG_PROFILE.match(profile):
                raise item_error(gpu, profile, 'is not a partition count (1, 2, 3, 4, 7) or a profile like "1g.10gb"')
        return v

    @model_validator(mode="after")
    def _whole_pool(self) -> GpuPool:
        selection = {"gpuNames": self.gpu_names, "families": self.families}
        attributes = [k for k, v in selection.items() if v] + [
            k
            for k, v in (
                ("gpuCountMin", self.gpu_count_min),
                ("gpuCountMax", self.gpu_count_max),
                ("gpuMemoryMinGiB", self.gpu_memory_min_gib),
            )
            if v is not None
        ]
        if self.instance_types and attributes:
            excluded = f"excludes {', '.join(attributes)}: choose one"
            raise item_error("instanceTypes", list(self.instance_types), excluded)
        if not self.instance_types and not attributes:
            raise item_error("instanceTypes", [], "a pool needs instanceTypes or GPU attributes (gpuNames, ...)")
        if self.gpu_count_min and self.gpu_count_max and self.gpu_count_min > self.gpu_count_max:
            raise item_error("gpuCountMax", self.gpu_count_max, f"is below gpuCountMin ({self.gpu_count_min})")
        if not self.instance_types and not self.matched_types:
            raise item_error(
                attributes[0], getattr(self, _FIELD_OF[attributes[0]]), "together these select no NVIDIA type"
            )
        reserved = "reserved" in self.capacity_types
        has_reservations = bool(self.capacity_reservation_ids or self.capacity_reservation_tags)
        if reserved and not has_reservations:
            raise item_error(
                "capacityTypes",
                list(self.capacity_types),
                "'reserved' needs capacityReservationIds or capacityReservationTags (Karpenter uses no open "
                "reservation otherwise)",
            )
        if has_reservations and not reserved:
            ids = list(self.capacity_reservation_ids)
            raise item_error("capacityReservationIds", ids, "needs 'reserved' in capacityTypes")
        if self.time_slicing_replicas and self.mig_profile:
            raise item_error("migProfile", self.mig_profile, "excludes timeSlicingReplicas: choose one way to share")
        largest = max(GPU_CATALOG[name].gpu_count for name in self.matched_types)
        if self.gpu_limit < largest:
            raise item_error("gpuLimit", self.gpu_limit, _limit_below_largest(largest, self.matched_types))
        models = {t.gpu_name for t in map(GPU_CATALOG.get, self.matched_types)}
        for gpu, profile in self.mig_profile.items():
            if _MIG_GPU.match(gpu) and f"{gpu[0]}{_MIG_GPU.match(gpu)[2]}" not in models:
                gpus = ", ".join(sorted(models))
                raise item_error(f"migProfile.{gpu}", profile, f"this pool has no such GPU; its GPUs: {gpus}")
        return self

    @property
    def requirements(self) -> list[dict[str, Any]]:
        """The pool's requirements on instance-type labels (selection, arch, OS)."""
        return [*selection_requirements(self), *platform_requirements()]

    @property
    def matched_types(self) -> list[str]:
        """The catalog's types these requirements match today."""
        return matching_types(self.requirements)


_FIELD_OF = {f.alias or name: name for name, f in GpuPool.model_fields.items()}


def _check_gpu_type(index: int, item: str) -> None:
    gpu_type = GPU_CATALOG.get(item)
    if gpu_type is None:
        families = ", ".join(GPU_FAMILIES)
        raise item_error(
            index, item, f"is not an NVIDIA GPU instance type (infra/data/gpu_catalog.json); families: {families}"
        )
    if gpu_type.arch != ARCH or gpu_type.gpu_count < 1:
        shape = f"is {gpu_type.arch} with {gpu_type.gpu_count} whole GPUs"
        raise item_error(index, item, f"{shape}; GPU pools need amd64 and at least one whole GPU")


def _limit_below_largest(largest: int, types: list[str]) -> str:
    biggest = [name for name in types if GPU_CATALOG[name].gpu_count == largest]
    return (
        f"is below the {largest} GPUs of the pool's largest type ({', '.join(biggest[:3])}): Karpenter would never "
        f"launch it; set at least {largest}, or narrow the pool (gpuCountMax, instanceTypes)"
    )


def _check_consolidate_after(v: str) -> str:
    if not v or not _DURATION.match(v) or _seconds(v) < 300:
        raise ValueError("must be a Go duration of at least 5m (longer than a cold GPU image pull), like 15m")
    return v


def _as_pools(value: Any) -> Any:
    return _as_list(value) if isinstance(value, str) else value


class StackConfig(BaseModel):
    """Validated, immutable stack configuration. Field aliases are the Pulumi config keys (camelCase)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    region: str = Field("us-west-2", alias=REGION_KEY, description="AWS region (the AWS provider's own key).")

    # Cluster and network (Terraform variables of the original project).
    cluster_name_prefix: str = _key(
        "eks-spot-gpu", "Cluster name prefix; the cluster is named <prefix>-<8 random characters>."
    )
    kubernetes_version: str = _key(NEWEST, "EKS Kubernetes version (render prints its support window).")
    kubernetes_support_type: str = _key(
        "STANDARD",
        "EKS upgrade policy: STANDARD (never billed for extended support; EKS upgrades the control plane at the end "
        "of standard support) or EXTENDED (stays, billed $0.60 instead of $0.10 per cluster-hour).",
    )
    vpc_cidr: str = _key("10.0.0.0/16", "VPC CIDR, a private /16 (split into private, public and intra subnets).")
    availability_zones: Strings = _key(
        (), "Zone IDs (like use1-az1) to pin the VPC to; empty for every zone of the region that needs no opt-in."
    )
    gpu_instance_types: Strings = _key(("p5.48xlarge",), "NVIDIA GPU instance types for the GPU Spot node pool.")
    gpu_capacity_types: Strings = _key(("spot",), "Capacity types for the GPU node pool: spot and/or on-demand.")
    gpu_pools: Annotated[tuple[GpuPool, ...], BeforeValidator(_as_pools)] = _key(
        (), "GPU node pools (a list of objects, see README); replaces the single pool of gpuInstanceTypes."
    )
    system_node_instance_types: Strings = _key(("m5.large",), "Instance types of the system managed node group.")
    system_node_min_size: Int = _key(2, "Minimum size of the system node group.")
    system_node_max_size: Int = _key(3, "Maximum size of the system node group.")
    system_node_desired_size: Int = _key(2, "Desired size of the system node group.")
    endpoint_public_access: Bool = _key(True, "Expose the Kubernetes API endpoint publicly.")
    public_access_cidrs: Strings = _key(("0.0.0.0/0",), "CIDRs allowed to reach the public API endpoint.")
    # Access. EKS access entries (infra/access.py); whoever runs `pulumi up` is cluster admin besides these.
    cluster_admins: Strings = _key(
        (), "IAM role or user ARNs given cluster admin (AmazonEKSClusterAdminPolicy) through EKS access entries."
    )
    cluster_viewers: Strings = _key(
        (), "IAM role or user ARNs given read-only access (AmazonEKSViewPolicy) through EKS access entries."
    )
    cluster_namespace_admins: StringListMap = _key(
        {}, "IAM role or user ARN -> namespaces where it gets AmazonEKSAdminPolicy (EKS access entries)."
    )
    # Control plane.
    control_plane_log_retention_days: Int = _key(30, "Retention in days of the control-plane log group.")
    addon_versions: StringMap = _key(
        {}, "EKS add-on versions overriding the pins of infra/data/eks_addons.json (add-on name -> version)."
    )

    # Karpenter.
    karpenter_version: str = _key("1.14.1", "Karpenter chart version (karpenter and karpenter-crd charts).")
    create_spot_service_linked_role: Bool = _key(
        False, "Create the account-wide AWSServiceRoleForEC2Spot role (only if the account has never used Spot)."
    )

    # Node classes and pools.
    bottlerocket_version: str = _key("1.64.0", "Pinned Bottlerocket version of Karpenter nodes (AMI alias).")
    gpu_limit: Int = _key(
        16, "Most whole GPUs the single GPU node pool may hold, before and after its nodes initialize."
    )
    gpu_consolidate_after: str = _key(
        "15m", "How long a GPU node must stay empty before Karpenter removes it (Go duration)."
    )
    gpu_data_volume_size: Int = _key(200, "GiB of the GPU nodes' data volume (container images).")
    gpu_image_cache_snapshot_id: str = _key(
        "", "EBS snapshot of a Bottlerocket data volume with images pre-pulled; empty for none."
    )
    default_pool_cpu_limit: Int = _key(1000, "Most vCPUs the default node pool may provision in total.")
    default_pool_memory_limit: Int = _key(4000, "Most GiB of memory the default node pool may provision in total.")
    soci_default_downloads_per_image: Int = _key(10, "SOCI parallel downloads per image, default node class.")
    soci_default_chunk_size: str = _key("16mb", "SOCI download chunk size, default node class.")
    soci_default_unpacks_per_image: Int = _key(10, "SOCI parallel unpacks per image, default node class.")
    soci_default_discard_unpacked_layers: Bool = _key(True, "Discard compressed layers after unpack, default class.")
    soci_gpu_downloads_per_image: Int = _key(30, "SOCI parallel downloads per image, GPU node class.")
    soci_gpu_chunk_size: str = _key("32mb", "SOCI download chunk size, GPU node class.")
    soci_gpu_unpacks_per_image: Int = _key(30, "SOCI parallel unpacks per image, GPU node class.")
    soci_gpu_discard_unpacked_layers: Bool = _key(True, "Discard compressed layers after unpack, GPU class.")

    # Image pull path. ECR pull-through cache (infra/image_cache.py) and ECR interface endpoints (infra/network.py).
    image_cache: Bool = _key(True, "ECR pull-through cache rules for public.ecr.aws, registry.k8s.io and quay.io.")
    image_cache_credentials: StringMap = _key(
        {}, "Opt-in cached registries that need credentials (docker-hub, ghcr) -> name of their Secrets Manager secret."
    )
    ecr_interface_endpoints: Bool = _key(
        False, "Interface VPC endpoints for ecr.api and ecr.dkr in the private subnets (billed per AZ-hour)."
    )

    # AWS Load Balancer Controller. Only versions whose IAM policy is in policies/ are allowed.
    lb_controller_version: Literal["3.5.0"] = _key(
        "3.5.0", "AWS Load Balancer Controller chart version (must match policies/aws-load-balancer-controller.json)."
    )

    # --- field rules ---

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError("is not an AWS region name (like us-west-2)")
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
        if v not in SUPPORTED_KUBERNETES_VERSIONS:
            raise ValueError(f"is not supported; allowed: {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}")
        return v

    @field_validator("kubernetes_support_type")
    @classmethod
    def _support_type(cls, v: str) -> str:
        if v not in SUPPORT_TYPES:
            close = difflib.get_close_matches(v.upper(), SUPPORT_TYPES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"is not an EKS support type; allowed: {', '.join(SUPPORT_TYPES)}{hint}")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc(cls, v: str) -> str:
        network = _network(v)
        if network.prefixlen > 16:
            raise ValueError("is too small: the subnet plan for 8 AZs (private /20, public /24, intra /24) needs a /16")
        if network.prefixlen < 16:
            raise ValueError("is too large: AWS VPCs are /16 at most")
        if not any(network.subnet_of(r) for r in _PRIVATE_RANGES):
            raise ValueError("must be a private range: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10")
        return str(network)

    @field_validator("availability_zones")
    @classmethod
    def _zones(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            if not _ZONE_ID.match(item):
                raise item_error(
                    i, item, "is not a zone ID (like use1-az1; zone names like us-east-1a differ per account)"
                )
        if len(v) == 1:
            raise ValueError("pins one zone; EKS needs at least two")
        return v

    @field_validator("gpu_instance_types", "system_node_instance_types")
    @classmethod
    def _instance_types(cls, v: tuple[str, ...], info: Any) -> tuple[str, ...]:
        _check_list(v)
        for i, item in enumerate(v):
            match = _INSTANCE_TYPE.match(item)
            if not match:
                raise item_error(i, item, "is not an EC2 instance type (like p5.48xlarge)")
            family = match["family"]
            if info.field_name == "gpu_instance_types":
                _check_gpu_type(i, item)
            if info.field_name == "system_node_instance_types":
                if family in GPU_FAMILIES:
                    raise item_error(i, item, "is a GPU type; system nodes need none (GPU work goes to Karpenter)")
                if _GRAVITON_FAMILY.match(family):
                    raise item_error(i, item, "is arm64 (Graviton); the system node group runs x86_64 Bottlerocket")
        return v

    @field_validator("gpu_capacity_types")
    @classmethod
    def _capacity(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v)
        for i, item in enumerate(v):
            if item not in ("spot", "on-demand"):
                raise item_error(i, item, "is not a capacity type; allowed: spot, on-demand")
        return v

    @field_validator("public_access_cidrs")
    @classmethod
    def _public_cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        for i, item in enumerate(v):
            try:
                _network(item)
            except ValueError as error:
                raise item_error(i, item, str(error)) from None
        return v

    @field_validator("cluster_admins", "cluster_viewers")
    @classmethod
    def _principals(cls, v: tuple[str, ...], info: Any) -> tuple[str, ...]:
        _check_list(v, allow_empty=True)
        folded = [item.casefold() for item in v]
        for i, item in enumerate(v):
            problem = principal_problem(item, info.data.get("region"))
            if problem:
                raise item_error(i, item, problem)
            if folded[i] in folded[:i]:  # IAM names are unique regardless of case: the same principal
                first = folded.index(folded[i])
                raise item_error(i, item, f"is the same principal as index {first} (IAM names ignore case)")
        return v

    @field_validator("cluster_namespace_admins")
    @classmethod
    def _namespace_admins(cls, v: dict[str, tuple[str, ...]], info: Any) -> dict[str, tuple[str, ...]]:
        if len(v) > MAX_LIST_ITEMS:
            raise ValueError(f"has {len(v)} principals; at most {MAX_LIST_ITEMS}")
        for arn, namespaces in v.items():
            problem = principal_problem(arn, info.data.get("region"))
            if problem:
                raise item_error(arn, list(namespaces), f"the key {problem}")
            if not namespaces:
                raise item_error(arn, [], "needs at least one namespace")
            for i, namespace in enumerate(namespaces):
                if not _DNS_LABEL.match(namespace):
                    raise item_error((arn, i), namespace, "is not a namespace name (a DNS label: a-z, 0-9, '-')")
                if namespace in namespaces[:i]:
                    raise item_error((arn, i), namespace, "is listed already")
        return v

    @field_validator("system_node_min_size", "system_node_max_size", "system_node_desired_size")
    @classmethod
    def _size(cls, v: int, info: Any) -> int:
        low = 2 if info.field_name == "system_node_min_size" else 0
        if not low <= v <= 100:
            why = " (Karpenter runs two replicas on separate system nodes)" if low else ""
            raise ValueError(f"must be between {low} and 100{why}")
        return v

    @field_validator("control_plane_log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"is not a CloudWatch retention; allowed: {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return v

    @field_validator("addon_versions")
    @classmethod
    def _addons(cls, v: dict[str, str]) -> dict[str, str]:
        for addon, version in v.items():
            if addon not in ADDONS:
                raise item_error(addon, version, f"is not an add-on this stack installs; allowed: {', '.join(ADDONS)}")
            if not isinstance(version, str) or not _ADDON_VERSION.match(version):
                raise item_error(addon, version, "is not an EKS add-on version like v1.12.4-eksbuild.1")
        return v

    @field_validator("karpenter_version")
    @classmethod
    def _karpenter(cls, v: str) -> str:
        # 1.8 is where RAID0 instance stores bind the SOCI directory; EKS 1.33 needs >= 1.5 anyway.
        if _semver(v) < (1, 8, 0) or _semver(v) >= (2, 0, 0):
            raise ValueError("must be a 1.x release >= 1.8.0 (RAID0 binding of the SOCI directory)")
        return v

    @field_validator("bottlerocket_version")
    @classmethod
    def _bottlerocket(cls, v: str) -> str:
        if _semver(v.removeprefix("v")) < (1, 46, 0):
            raise ValueError("must be a pinned release >= 1.46.0 (SOCI parallel pull + RAID0 binding), like 1.64.0")
        return v.removeprefix("v")

    @field_validator("gpu_consolidate_after")
    @classmethod
    def _duration(cls, v: str) -> str:
        return _check_consolidate_after(v)

    @field_validator("gpu_pools")
    @classmethod
    def _pools(cls, v: tuple[GpuPool, ...]) -> tuple[GpuPool, ...]:
        names = [pool.name for pool in v]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise item_error((i, "name"), name, f"is the name of gpuPools[{names.index(name)}] already")
        return v

    @field_validator("gpu_limit", "default_pool_cpu_limit", "default_pool_memory_limit")
    @classmethod
    def _positive(cls, v: int) -> int:
        if not 1 <= v <= 1_000_000:
            raise ValueError("must be a positive whole number")
        return v

    @field_validator("gpu_data_volume_size")
    @classmethod
    def _volume(cls, v: int) -> int:
        if not 50 <= v <= 16384:
            raise ValueError("must be between 50 and 16384 GiB (gp3 limits; GPU images are 10-20 GB)")
        return v

    @field_validator("gpu_image_cache_snapshot_id")
    @classmethod
    def _snapshot(cls, v: str) -> str:
        if v and not _SNAPSHOT_ID.match(v):
            raise ValueError("must be empty or an EBS snapshot id (snap- and 8 or 17 hex digits)")
        return v

    @field_validator(
        "soci_default_downloads_per_image",
        "soci_default_unpacks_per_image",
        "soci_gpu_downloads_per_image",
        "soci_gpu_unpacks_per_image",
    )
    @classmethod
    def _concurrency(cls, v: int) -> int:
        if not 1 <= v <= 256:
            raise ValueError("must be between 1 and 256")
        return v

    @field_validator("soci_default_chunk_size", "soci_gpu_chunk_size")
    @classmethod
    def _chunk(cls, v: str) -> str:
        if not _CHUNK_SIZE.match(v):
            raise ValueError('must be "unlimited" or a byte size like 16mb')
        return v

    @field_validator("image_cache_credentials")
    @classmethod
    def _cache_credentials(cls, v: dict[str, str], info: Any) -> dict[str, str]:
        for prefix, secret in v.items():
            if prefix not in CREDENTIALED_REGISTRIES:
                why = "needs no credentials: it is cached by default" if prefix in IMAGE_CACHE_REGISTRIES else "unknown"
                allowed = ", ".join(CREDENTIALED_REGISTRIES)
                raise item_error(prefix, secret, f"{why}; registries that need one: {allowed}")
            if (
                not isinstance(secret, str)
                or not secret.startswith(IMAGE_CACHE_SECRET_PREFIX)
                or secret == IMAGE_CACHE_SECRET_PREFIX
                or not _SECRET_NAME.match(secret)
            ):
                raise item_error(
                    prefix,
                    secret,
                    f"is not a Secrets Manager secret name starting with {IMAGE_CACHE_SECRET_PREFIX} "
                    "(ECR requires it; letters, digits and /_+=.@- only), like "
                    f"{IMAGE_CACHE_SECRET_PREFIX}{prefix}",
                )
        if v and info.data.get("image_cache") is False:
            raise ValueError("has no effect while imageCache is false; remove it or set imageCache true")
        return v

    # --- derived values ---

    @property
    def karpenter_node_alias(self) -> str:
        return f"bottlerocket@v{self.bottlerocket_version}"

    @property
    def effective_gpu_pools(self) -> tuple[GpuPool, ...]:
        """`gpuPools`, or else the seed's single pool `gpu-spot` from gpuInstanceTypes and gpuCapacityTypes."""
        if self.gpu_pools:
            return self.gpu_pools
        return (
            GpuPool(
                name=LEGACY_GPU_POOL,
                instance_types=self.gpu_instance_types,
                capacity_types=self.gpu_capacity_types,
                gpu_limit=self.gpu_limit,
                consolidate_after=self.gpu_consolidate_after,
            ),
        )

    def consolidate_after(self, pool: GpuPool) -> str:
        return pool.consolidate_after or self.gpu_consolidate_after

    def addon_version(self, addon: str) -> str:
        """The configured version of an EKS add-on, else its pin for this Kubernetes version."""
        return self.addon_versions.get(addon) or ADDON_VERSIONS[self.kubernetes_version][addon]


def _check_list(items: tuple[str, ...], allow_empty: bool = False) -> None:
    if not items and not allow_empty:
        raise ValueError("must not be empty")
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"has {len(items)} items; at most {MAX_LIST_ITEMS}")
    for i, item in enumerate(items):
        if item == "":
            raise item_error(i, item, "is empty")
        if item in items[:i]:
            raise item_error(i, item, f"is listed already, at index {items.index(item)}")


def _network(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as error:
        raise ValueError(f"is not an IPv4 CIDR with host bits zero, like 10.0.0.0/16 ({error})") from None


def region_partition(region: str | None) -> str | None:
    """The AWS partition of a region name (None when unknown: ISO regions, or no valid region)."""
    if not region or "-iso" in region:
        return None
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def principal_problem(arn: str, region: str | None = None) -> str | None:
    """Why `arn` cannot be the principal of an EKS access entry (an IAM role or user, path allowed), or None."""
    example = "arn:aws:iam::123456789012:role/Admin"
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return f"is not an ARN; expected an IAM role or user ARN like {example}"
    _, partition, service, arn_region, account, resource = parts
    if partition not in IAM_PARTITIONS:
        return f"has partition {partition!r}; allowed: {', '.join(IAM_PARTITIONS)}"
    if not _ACCOUNT_ID.match(account):
        return f"has account {account!r}; an AWS account ID is 12 digits"
    kind, _, path_and_name = resource.partition("/")
    if service == "sts" and kind == "assumed-role":
        # arn:aws:sts::<account>:assumed-role/<role name>/<session>: the session ARN hides the role's path.
        role = path_and_name.split("/")[0] or "<role>"
        return (
            "is an assumed-role session (what `aws sts get-caller-identity` prints), not a principal EKS can grant; "
            f"give the role: probably arn:{partition}:iam::{account}:role/{role}, with its path if it has one "
            f"(`aws iam get-role --role-name {role} --query Role.Arn` prints it)"
        )
    if service != "iam" or arn_region:
        return f"is not an IAM ARN (arn:<partition>:iam::<account>:...); expected like {example}"
    if kind not in ("role", "user"):
        hint = " (for a group, grant a role its members assume)" if kind == "group" else ""
        return f"is an IAM {kind!r}; only roles (role/...) and users (user/...) can have access entries{hint}"
    *path, name = path_and_name.split("/")
    if not _IAM_NAME.match(name) or not all(_IAM_PATH_PART.match(part) for part in path):
        return f"has no valid {kind} name after {kind}/ (letters, digits and +=,.@_-, path parts separated by /)"
    expected = region_partition(region)
    if expected and partition != expected:
        return f"is in partition {partition}, but the stack's region {region} is in {expected}"
    return None


def _semver(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ValueError("is not a version like 1.2.3")
    return int(match[1]), int(match[2]), int(match[3])


def _seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([hms])", duration))


# --- relations between keys ------------------------------------------------------------------------------------------


def _relation_problems(cfg: StackConfig) -> list[ConfigProblem]:
    problems = []
    sizes = (cfg.system_node_min_size, cfg.system_node_desired_size, cfg.system_node_max_size)
    if not sizes[0] <= sizes[1] <= sizes[2]:
        problems.append(
            ConfigProblem(
                "systemNodeDesiredSize",
                sizes[1],
                f"needs systemNodeMinSize ({sizes[0]}) <= systemNodeDesiredSize ({sizes[1]}) "
                f"<= systemNodeMaxSize ({sizes[2]})",
            )
        )
    single_pool_keys = [
        key
        for key, field in (("gpuInstanceTypes", "gpu_instance_types"), ("gpuCapacityTypes", "gpu_capacity_types"))
        if getattr(cfg, field) != StackConfig.model_fields[field].default  # `pulumi up` injects the defaults
    ]
    if cfg.gpu_pools and single_pool_keys:
        problems.append(
            ConfigProblem(
                "gpuPools",
                [pool.name for pool in cfg.gpu_pools],
                f"replaces the single pool of {' and '.join(single_pool_keys)}: set one or the other, not both",
            )
        )
    problems += _version_problems(cfg)
    largest = max(GPU_CATALOG[name].gpu_count for name in cfg.gpu_instance_types)
    if not cfg.gpu_pools and cfg.gpu_limit < largest:
        why = _limit_below_largest(largest, list(cfg.gpu_instance_types))
        problems.append(ConfigProblem("gpuLimit", cfg.gpu_limit, why))
    default_cidrs = StackConfig.model_fields["public_access_cidrs"].default
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
    problems += _access_problems(cfg)
    return problems


def _version_problems(cfg: StackConfig) -> list[ConfigProblem]:
    """The Kubernetes version must be one the pinned Karpenter supports and the pinned Bottlerocket release builds an
    NVIDIA variant for (infra/data/kubernetes_versions.json); releases not in that file are not checked."""
    problems = []
    version = cfg.kubernetes_version
    karpenter = KARPENTER_RANGES.get(".".join(cfg.karpenter_version.split(".")[:2]))
    if karpenter and not minor(karpenter[0]) <= minor(version) <= minor(karpenter[1]):
        problems.append(
            ConfigProblem(
                "kubernetesVersion",
                version,
                f"Karpenter {cfg.karpenter_version} supports Kubernetes {karpenter[0]} to {karpenter[1]}",
            )
        )
    variants = BOTTLEROCKET_NVIDIA_VARIANTS.get(cfg.bottlerocket_version)
    if variants and version not in variants:
        problems.append(
            ConfigProblem(
                "kubernetesVersion",
                version,
                f"Bottlerocket {cfg.bottlerocket_version} builds NVIDIA variants for {', '.join(variants)} only",
            )
        )
    return problems


def _access_problems(cfg: StackConfig) -> list[ConfigProblem]:
    """One principal, one access level: an admin is not also a viewer or a namespace admin (IAM ignores case)."""
    admins = [arn.casefold() for arn in cfg.cluster_admins]
    problems = [
        ConfigProblem(
            f"clusterViewers[{i}]",
            arn,
            f"is clusterAdmins[{admins.index(arn.casefold())}] already: list a principal once (admin includes view)",
        )
        for i, arn in enumerate(cfg.cluster_viewers)
        if arn.casefold() in admins
    ]
    problems += [
        ConfigProblem(
            f"clusterNamespaceAdmins.{arn}",
            list(namespaces),
            f"is clusterAdmins[{admins.index(arn.casefold())}] already: cluster admin covers every namespace",
        )
        for arn, namespaces in cfg.cluster_namespace_admins.items()
        if arn.casefold() in admins
    ]
    return problems


# --- entry points ----------------------------------------------------------------------------------------------------

KNOWN_KEYS: tuple[str, ...] = tuple(f.alias for f in StackConfig.model_fields.values() if f.alias != REGION_KEY)


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a raw config map whose keys are `eks-gpu-spot:<key>` (or bare `<key>`) and `aws:region`."""
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for full_key, value in raw.items():
        namespace, _, key = str(full_key).rpartition(":")
        if full_key == REGION_KEY:
            values[REGION_KEY] = value
        elif namespace in ("", PROJECT):
            if key in KNOWN_KEYS:
                values[key] = value
            else:
                close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(ConfigProblem(key, value, f"unknown key; {hint}known keys: {', '.join(KNOWN_KEYS)}"))
        # Other namespaces (aws:, kubernetes:, pulumi:) belong to providers and the engine.
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as error:
        problems.extend(_from_pydantic(error, values))
        raise ConfigError(problems) from None
    problems.extend(_relation_problems(cfg))
    if problems:
        raise ConfigError(problems)
    return cfg


# Pydantic names the branch of an optional value in an error's location (`gpuCountMin.int`): not a config key.
_UNION_BRANCHES = {"int", "str", "none", "function-before[_as_int(), int]"}


def _from_pydantic(error: ValidationError, values: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    seen = set()
    for detail in error.errors():
        loc = [part for part in detail["loc"] if part not in _UNION_BRANCHES]
        key = str(loc[0]) if loc else "config"
        value = values.get(key, detail.get("input"))
        if len(loc) > 1:  # inside a list of objects: gpuPools[0].gpuNames
            key += "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
            value = detail.get("input")
        if detail["type"] == "item":
            key, value = f"{key}{detail['ctx']['where']}", detail["ctx"]["item"]
        if isinstance(value, tuple):
            value = list(value)
        if key in seen:  # one line per key: the first thing wrong with it
            continue
        seen.add(key)
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            reason = f"unknown key; known keys: {', '.join(_FIELD_OF)}"
        problems.append(ConfigProblem(key, value, reason))
    return problems


def load_config() -> StackConfig:
    """Read this stack's config from the Pulumi runtime and validate it."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_config(raw)
