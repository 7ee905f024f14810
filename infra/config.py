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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

PROJECT = "eks-gpu-spot"
REGION_KEY = "aws:region"

_CATALOG = json.loads((Path(__file__).parent / "data" / "aws_catalog.json").read_text())
SUPPORTED_KUBERNETES_VERSIONS: tuple[str, ...] = tuple(_CATALOG["supported_kubernetes_versions"])
GPU_FAMILIES: frozenset[str] = frozenset(_CATALOG["nvidia_gpu_x86_64_families"])
LOG_RETENTION_DAYS: tuple[int, ...] = tuple(_CATALOG["cloudwatch_log_retention_days"])
# Pinned EKS add-on versions per Kubernetes version; the addonVersions key overrides single add-ons.
ADDON_VERSIONS: dict[str, dict[str, str]] = json.loads(
    (Path(__file__).parent / "data" / "eks_addons.json").read_text()
)["versions"]
ADDONS: tuple[str, ...] = tuple(sorted({addon for versions in ADDON_VERSIONS.values() for addon in versions}))
_ADDON_VERSION = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")

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
Int = Annotated[int, BeforeValidator(_as_int)]
Bool = Annotated[bool, BeforeValidator(_as_bool)]


def item_error(at: int | str, item: Any, reason: str) -> PydanticCustomError:
    """An error about one item of a list (`key[index]`) or one entry of a map (`key.name`), with its value."""
    where = f"[{at}]" if isinstance(at, int) else f".{at}"
    return PydanticCustomError("item", "{reason}", {"where": where, "item": item, "reason": reason})


def _key(default: Any, description: str, **constraints: Any) -> Any:
    return Field(default, description=description, **constraints)


# --- the model -----------------------------------------------------------------------------------------------------


class StackConfig(BaseModel):
    """Validated, immutable stack configuration. Field aliases are the Pulumi config keys (camelCase)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    region: str = Field("us-west-2", alias=REGION_KEY, description="AWS region (the AWS provider's own key).")

    # Cluster and network (Terraform variables of the original project).
    cluster_name_prefix: str = _key(
        "eks-spot-gpu", "Cluster name prefix; the cluster is named <prefix>-<8 random characters>."
    )
    kubernetes_version: str = _key("1.33", "EKS Kubernetes version.")
    vpc_cidr: str = _key("10.0.0.0/16", "VPC CIDR, a private /16 (split into private, public and intra subnets).")
    availability_zones: Strings = _key(
        (), "Zone IDs (like use1-az1) to pin the VPC to; empty for every zone of the region that needs no opt-in."
    )
    gpu_instance_types: Strings = _key(("p5.48xlarge",), "NVIDIA GPU instance types for the GPU Spot node pool.")
    gpu_capacity_types: Strings = _key(("spot",), "Capacity types for the GPU node pool: spot and/or on-demand.")
    system_node_instance_types: Strings = _key(("m5.large",), "Instance types of the system managed node group.")
    system_node_min_size: Int = _key(2, "Minimum size of the system node group.")
    system_node_max_size: Int = _key(3, "Maximum size of the system node group.")
    system_node_desired_size: Int = _key(2, "Desired size of the system node group.")
    endpoint_public_access: Bool = _key(True, "Expose the Kubernetes API endpoint publicly.")
    public_access_cidrs: Strings = _key(("0.0.0.0/0",), "CIDRs allowed to reach the public API endpoint.")
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
    gpu_limit: Int = _key(16, "Most nvidia.com/gpu the GPU node pool may provision in total.")
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
            if info.field_name == "gpu_instance_types" and family not in GPU_FAMILIES:
                allowed = ", ".join(sorted(GPU_FAMILIES))
                raise item_error(i, item, f"is not an NVIDIA GPU instance type; allowed families: {allowed}")
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
        if not v or not _DURATION.match(v) or _seconds(v) < 300:
            raise ValueError("must be a Go duration of at least 5m (longer than a cold GPU image pull), like 15m")
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

    # --- derived values ---

    @property
    def karpenter_node_alias(self) -> str:
        return f"bottlerocket@v{self.bottlerocket_version}"

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


def _from_pydantic(error: ValidationError, values: Mapping[str, Any]) -> list[ConfigProblem]:
    problems = []
    seen = set()
    for detail in error.errors():
        key = str(detail["loc"][0]) if detail["loc"] else "config"
        value = values.get(key, detail.get("input"))
        if detail["type"] == "item":
            key, value = f"{key}{detail['ctx']['where']}", detail["ctx"]["item"]
        if key in seen:  # one line per key: the first thing wrong with it
            continue
        seen.add(key)
        reason = detail["msg"].removeprefix("Value error, ")
        problems.append(ConfigProblem(key, value, reason))
    return problems


def load_config() -> StackConfig:
    """Read this stack's config from the Pulumi runtime and validate it."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_config(raw)
