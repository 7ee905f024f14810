"""Keys of the system managed node group (infra/cluster.py), where the controllers run."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from infra.catalog.gpus import GPU_FAMILIES
from infra.config.convert import Int, Section, Strings, check_items, check_range, key
from infra.config.errors import ConfigProblem

INSTANCE_TYPE = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)\."
    r"(?:nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(?:-[1-9][0-9]*xl)?)$"
)
# The label of the system node group's nodes: the controllers' and agents' nodeSelector, never on a Karpenter node.
SYSTEM_NODE_LABEL = ("eks-gpu-spot/node-role", "system")
SYSTEM_NODE_SELECTOR = dict([SYSTEM_NODE_LABEL])
# Graviton families carry a "g" after the generation digit (m7g, c6gn, r6gd, t4g, im4gn).
_GRAVITON_FAMILY = re.compile(r"^[a-z]+[0-9]+[a-z]*g[a-z]*$")


def instance_type_problem(item: str) -> str | None:
    return None if INSTANCE_TYPE.match(item) else "is not an EC2 instance type (like p5.48xlarge)"


class SystemNodeKeys(Section):
    system_node_instance_types: Strings = key(("m5.large",), "Instance types of the system managed node group.")
    system_node_min_size: Int = key(2, "Minimum size of the system node group.")
    system_node_max_size: Int = key(3, "Maximum size of the system node group.")
    system_node_desired_size: Int = key(2, "Desired size of the system node group.")

    @field_validator("system_node_instance_types")
    @classmethod
    def _instance_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_items(v, lambda _, item: instance_type_problem(item) or _system_type_problem(item))

    @field_validator("system_node_min_size", "system_node_max_size", "system_node_desired_size")
    @classmethod
    def _size(cls, v: int, info: Any) -> int:
        low = 2 if info.field_name == "system_node_min_size" else 0
        why = " (Karpenter runs two replicas on separate system nodes)" if low else ""
        return check_range(v, low, 100, f"must be between {low} and 100{why}")


def _system_type_problem(item: str) -> str | None:
    family = INSTANCE_TYPE.match(item)["family"]
    if family in GPU_FAMILIES:
        return "is a GPU type; system nodes need none (GPU work goes to Karpenter)"
    if _GRAVITON_FAMILY.match(family):
        return "is arm64 (Graviton); the system node group runs x86_64 Bottlerocket"
    return None


def relation_problems(cfg: Any) -> list[ConfigProblem]:
    sizes = (cfg.system_node_min_size, cfg.system_node_desired_size, cfg.system_node_max_size)
    if sizes[0] <= sizes[1] <= sizes[2]:
        return []
    why = (
        f"needs systemNodeMinSize ({sizes[0]}) <= systemNodeDesiredSize ({sizes[1]}) <= systemNodeMaxSize ({sizes[2]})"
    )
    return [ConfigProblem("systemNodeDesiredSize", sizes[1], why)]
