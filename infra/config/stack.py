"""The whole stack configuration: every concern's keys composed into one immutable `StackConfig`, and the one
loader that validates the raw map Pulumi hands the program."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from infra.config import access, cluster, gpu_pools, system_nodes
from infra.config.access import AccessKeys
from infra.config.cluster import ClusterKeys
from infra.config.convert import PROJECT, REGION_KEY
from infra.config.errors import ConfigError, ConfigProblem
from infra.config.gpu_pools import _FIELD_OF, GpuPoolKeys
from infra.config.image_cache import ImageCacheKeys
from infra.config.karpenter import KarpenterKeys
from infra.config.lb_controller import LbControllerKeys
from infra.config.namespaces import did_you_mean, namespace_problems
from infra.config.network import NetworkKeys
from infra.config.node_pools import NodePoolKeys
from infra.config.observability import ObservabilityKeys
from infra.config.system_nodes import SystemNodeKeys


# Pydantic takes the fields of the bases last to first: the cluster's keys (region first: the access keys check ARNs
# against its partition) come first.
class StackConfig(
    ObservabilityKeys,
    LbControllerKeys,
    ImageCacheKeys,
    NodePoolKeys,
    KarpenterKeys,
    AccessKeys,
    SystemNodeKeys,
    GpuPoolKeys,
    NetworkKeys,
    ClusterKeys,
):
    """Validated, immutable stack configuration. Field aliases are the Pulumi config keys (camelCase)."""


KNOWN_KEYS: tuple[str, ...] = tuple(f.alias for f in StackConfig.model_fields.values() if f.alias != REGION_KEY)


def relation_problems(cfg: StackConfig) -> list[ConfigProblem]:
    """Rules between keys, each kept with its concern."""
    return [
        *system_nodes.relation_problems(cfg),
        *gpu_pools.relation_problems(cfg),
        *cluster.relation_problems(cfg),
        *access.relation_problems(cfg),
    ]


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate a raw config map whose keys are `eks-gpu-spot:<key>` (or bare `<key>`) and `aws:region`."""
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = namespace_problems(raw, KNOWN_KEYS)
    for full_key, value in raw.items():
        namespace, _, key = str(full_key).rpartition(":")
        if full_key == REGION_KEY:
            values[REGION_KEY] = value
        elif namespace in ("", PROJECT):
            if key in KNOWN_KEYS:
                values[key] = value
            else:
                hint = did_you_mean(key, KNOWN_KEYS)
                problems.append(ConfigProblem(key, value, f"unknown key; {hint}known keys: {', '.join(KNOWN_KEYS)}"))
        # Other namespaces: the packages' (aws:, kubernetes:, ...) or errors of namespace_problems.
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as error:
        problems.extend(_from_pydantic(error, values))
        raise ConfigError(problems) from None
    problems.extend(relation_problems(cfg))
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
        reason = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            reason = f"unknown key; {did_you_mean(str(loc[-1]), _FIELD_OF)}known keys: {', '.join(_FIELD_OF)}"
        found = [(key, value, reason)]
        if detail["type"] == "item":
            found = [(f"{key}{detail['ctx']['where']}", detail["ctx"]["item"], reason)]
        elif detail["type"] == "items":  # every bad item of one value (errors.item_errors)
            found = [(f"{key}{e['where']}", e["item"], e["reason"]) for e in detail["ctx"]["errors"]]
        for where, item, why in found:
            if where in seen:  # one line per key: the first thing wrong with it
                continue
            seen.add(where)
            problems.append(ConfigProblem(where, list(item) if isinstance(item, tuple) else item, why))
    return problems


def load_config() -> StackConfig:
    """Read this stack's config from the Pulumi runtime and validate it."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_config(raw)
