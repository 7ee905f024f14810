"""Reading the strings Pulumi hands to the program, and the checks every concern shares.

Pulumi gives a program every config value as a string (structured YAML arrives as JSON): lists are accepted as a
JSON list or a comma list, maps as JSON objects, numbers and booleans as their text.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from infra.config.errors import item_error, item_errors

PROJECT = "eks-gpu-spot"
REGION_KEY = "aws:region"
# An AWS region name (the one definition: config and the preflight's --regions use it).
REGION = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
MAX_LIST_ITEMS = 50
_INT = re.compile(r"^[+-]?[0-9]+$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


class Section(BaseModel):
    """The model settings every concern's keys share: immutable, unknown keys refused, camelCase aliases."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def as_list(value: Any) -> Any:
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


def as_map(value: Any) -> Any:
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


def as_int(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and not _INT.match(value.strip())):
        raise ValueError("must be a whole number")
    return int(value.strip()) if isinstance(value, str) else value


def as_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


Strings = Annotated[tuple[str, ...], BeforeValidator(as_list)]
StringMap = Annotated[dict[str, str], BeforeValidator(as_map)]
StringListMap = Annotated[dict[str, Strings], BeforeValidator(as_map)]
Int = Annotated[int, BeforeValidator(as_int)]
Bool = Annotated[bool, BeforeValidator(as_bool)]


def key(default: Any, description: str, **constraints: Any) -> Any:
    """A stack key: its default and the description Pulumi.yaml and README repeat."""
    return Field(default, description=description, **constraints)


def check_range(value: int | None, low: int, high: int, reason: str) -> int | None:
    """A whole number within [low, high] (None passes: the key is optional)."""
    if value is not None and not low <= value <= high:
        raise ValueError(reason)
    return value


def check_choice(value: Any, allowed: Sequence[Any], reason: str, suggest: bool = False) -> Any:
    """One of a fixed set: else `reason; allowed: ...` (and a did-you-mean for a near miss when `suggest`)."""
    if value in allowed:
        return value
    close = difflib.get_close_matches(str(value).upper(), [str(a) for a in allowed], n=1) if suggest else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{reason}; allowed: {', '.join(map(str, allowed))}{hint}")


def check_items(
    items: Sequence[Any], check: Callable[[int, Any], str | None] | None = None, allow_empty: bool = False
) -> tuple[Any, ...]:
    """A list key: not empty (unless allowed), at most MAX_LIST_ITEMS, no empty or repeated item, and `check(index,
    item)` -> why that item is wrong (or None) for each item. Reports every bad item, each once."""
    if not items and not allow_empty:
        raise ValueError("must not be empty")
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"has {len(items)} items; at most {MAX_LIST_ITEMS}")
    errors = []
    for i, item in enumerate(items):
        if item == "":
            problem: str | None = "is empty"
        elif item in items[:i]:
            problem = f"is listed already, at index {items.index(item)}"
        else:
            problem = check(i, item) if check else None
        if problem:
            errors.append(item_error(i, item, problem))
    if errors:  # every bad item, not the first one only
        raise item_errors(errors)
    return tuple(items)


def network(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as error:
        raise ValueError(f"is not an IPv4 CIDR with host bits zero, like 10.0.0.0/16 ({error})") from None


def semver(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ValueError("is not a version like 1.2.3")
    return int(match[1]), int(match[2]), int(match[3])


def seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([hms])", duration))
