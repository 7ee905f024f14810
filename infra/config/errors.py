"""Config errors: one ConfigError naming every bad key, its value and what is allowed."""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic_core import PydanticCustomError


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


def item_error(at: int | str | tuple[int | str, ...], item: Any, reason: str) -> PydanticCustomError:
    """An error about one item of a list (`key[index]`), one entry of a map (`key.name`) or a path of both
    (`key[0].name`), with that item's value."""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (at if isinstance(at, tuple) else (at,)))
    return PydanticCustomError("item", "{reason}", {"where": where, "item": item, "reason": reason})


def item_errors(errors: list[PydanticCustomError]) -> PydanticCustomError:
    """Every bad item of one value at once (`gpuCapacityTypes[0]` and `[1]`): a validator can raise only one error,
    so this one carries each item's; the loader reports one line per item (infra/config/stack.py)."""
    if len(errors) == 1:
        return errors[0]
    found = [dict(error.context or {}) for error in errors]
    reason = "; ".join(f"{e['where']}: {e['reason']}" for e in found)
    return PydanticCustomError("items", "{reason}", {"errors": found, "reason": reason})
