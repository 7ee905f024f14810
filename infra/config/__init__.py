"""Stack configuration: the only package that reads Pulumi config.

`parse_config` turns the raw config map (strings, as Pulumi hands them to the program) into an immutable,
validated `StackConfig`, or raises one `ConfigError` that names every bad key, its value and what is allowed.
It runs before any resource is registered. Each concern keeps its keys, their validators and the rules between
them in a module named after the component it feeds (cluster, network, access, system_nodes, gpu_pools with gpu_pool,
node_pools, karpenter, image_cache, lb_controller, observability); `stack` composes them.
"""

from infra.config.cluster import ADDON_VERSIONS, ADDONS
from infra.config.convert import PROJECT, REGION, REGION_KEY
from infra.config.errors import ConfigError, ConfigProblem
from infra.config.gpu_pools import LEGACY_GPU_POOL, GpuPool
from infra.config.image_cache import IMAGE_CACHE_REGISTRIES
from infra.config.stack import KNOWN_KEYS, StackConfig, load_config, parse_config

__all__ = [
    "ADDONS",
    "ADDON_VERSIONS",
    "IMAGE_CACHE_REGISTRIES",
    "KNOWN_KEYS",
    "LEGACY_GPU_POOL",
    "PROJECT",
    "REGION",
    "REGION_KEY",
    "ConfigError",
    "ConfigProblem",
    "GpuPool",
    "StackConfig",
    "load_config",
    "parse_config",
]
