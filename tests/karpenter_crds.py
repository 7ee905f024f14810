"""Validate objects against Karpenter's CRDs the way the API server would: structural schema, defaults, CEL rules.

1. Unknown fields are rejected (`additionalProperties: false` on every object schema that lists its properties
   and neither declares a map value type nor preserves unknown fields) -- the API server would silently prune
   them, which hides typos, so strict field validation is what we want here.
2. Defaults from the schema are applied, outermost first, before the CEL rules run (as the API server does).
3. Every `x-kubernetes-validations` rule is evaluated with `self` bound to the value at the rule's level.
   Transition rules (those reading `oldSelf`) are skipped: there is no old object on create.

The Kubernetes CEL library functions the rules call and cel-python lacks (`find`, `split`) are registered here.
Any other undeclared function makes evaluation fail, so a new CRD using one is noticed, not passed.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes

CRD_FILES = {
    ("karpenter.sh/v1", "NodePool"): "karpenter.sh_nodepools.yaml",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "karpenter.k8s.aws_ec2nodeclasses.yaml",
    ("karpenter.sh/v1alpha1", "NodeOverlay"): "karpenter.sh_nodeoverlays.yaml",
    ("autoscaling.x-k8s.io/v1beta1", "CapacityBuffer"): "autoscaling.x-k8s.io_capacitybuffers.yaml",
}


@dataclass(frozen=True)
class Violation:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- Kubernetes CEL extension functions (k8s.io/apiserver/pkg/cel/library, cel-go ext/strings) ------------------


def _find(text: celtypes.StringType, pattern: celtypes.StringType) -> celtypes.StringType:
    """`s.find(re)`: the first match of the regular expression, or "" when there is none."""
    match = re.search(str(pattern), str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _split(text: celtypes.StringType, separator: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])


KUBERNETES_CEL_FUNCTIONS = {"find": _find, "split": _split}


# --- schema handling -------------------------------------------------------------------------------------------------


def load_schema(crds: Path, api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of `kind` at the version `api_version` names."""
    document = yaml.safe_load((crds / CRD_FILES[(api_version, kind)]).read_text(encoding="utf-8"))
    version = api_version.rpartition("/")[2]
    (served,) = [v for v in document["spec"]["versions"] if v["name"] == version]
    return served["schema"]["openAPIV3Schema"]


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of the structural schema that rejects unknown fields (Kubernetes extensions dropped)."""
    strict: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "description":
            continue
        if key == "properties":  # property names are data, each value a schema
            strict[key] = {name: strict_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            strict[key] = strict_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            strict[key] = [strict_json_schema(sub) for sub in value]
        else:  # type, enum, pattern, default, ...: copied as they are
            strict[key] = value
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill absent fields that have a schema default, then default inside them (API-server order)."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _rules_with_values(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (path, rule, self) pair: each rule paired with the value at the level that declares it."""
    for rule in schema.get("x-kubernetes-validations", ()):
        yield path, rule, value
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _rules_with_values(sub, value[name], f"{path}.{name}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                yield from _rules_with_values(schema["additionalProperties"], item, f"{path}[{key!r}]")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _rules_with_values(schema["items"], item, f"{path}[{index}]")


def is_transition_rule(rule: dict[str, Any]) -> bool:
    return re.search(r"\boldSelf\b", rule["rule"]) is not None


@functools.lru_cache(maxsize=256)
def _program(expression: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(expression), functions=KUBERNETES_CEL_FUNCTIONS)


def evaluate_rule(expression: str, value: Any, old: Any = None) -> bool | str:
    """True/False from the rule, or the evaluation error as text (the API server rejects on errors too). `old`: the
    stored object's value at the same place, for a transition rule (`oldSelf`)."""
    bindings = {"self": celpy.json_to_cel(value)}
    if old is not None:
        bindings["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = _program(expression).evaluate(bindings)
    except celpy.CELEvalError as error:
        return f"evaluation error: {error}"
    if isinstance(result, celpy.CELEvalError):
        return f"evaluation error: {result}"
    if not isinstance(result, celtypes.BoolType):
        return f"rule returned {type(result).__name__}, not a bool"
    return bool(result)


# --- entry points ----------------------------------------------------------------------------------------------------


def cel_rules(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every CEL rule declared anywhere in a schema (for coverage checks)."""
    if isinstance(schema, dict):
        yield from schema.get("x-kubernetes-validations", ())
        for key, sub in schema.items():
            if key == "properties":
                for prop in sub.values():
                    yield from cel_rules(prop)
            elif key in ("items", "additionalProperties"):
                yield from cel_rules(sub)


def validate(crds: Path, obj: dict[str, Any]) -> list[Violation]:
    """Every reason the API server (strict field validation) would reject `obj`; empty when it is accepted."""
    schema = load_schema(crds, obj["apiVersion"], obj["kind"])
    strict = strict_json_schema(schema)
    violations = [
        Violation("$" + "".join(f"[{p!r}]" for p in error.absolute_path), error.message)
        for error in jsonschema.Draft7Validator(strict).iter_errors(obj)
    ]
    if violations:  # CEL rules assume a schema-valid object (the API server evaluates them only then)
        return violations
    defaulted = apply_defaults(schema, copy.deepcopy(obj))
    for path, rule, value in _rules_with_values(schema, defaulted, "$"):
        if is_transition_rule(rule):
            continue
        outcome = evaluate_rule(rule["rule"], value)
        if outcome is not True:
            detail = "" if outcome is False else f" ({outcome})"
            violations.append(Violation(path, rule.get("message", rule["rule"]) + detail))
    return violations


def validate_update(crds: Path, old: dict[str, Any], new: dict[str, Any]) -> list[Violation]:
    """Every reason the API server would reject updating the stored `old` to `new`: `new`'s own violations, then the
    transition rules (those reading `oldSelf`), evaluated where the value exists in both objects."""
    violations = validate(crds, new)
    if violations:
        return violations
    schema = load_schema(crds, new["apiVersion"], new["kind"])
    before = {
        (path, rule["rule"]): value
        for path, rule, value in _rules_with_values(schema, apply_defaults(schema, copy.deepcopy(old)), "$")
    }
    for path, rule, value in _rules_with_values(schema, apply_defaults(schema, copy.deepcopy(new)), "$"):
        if not is_transition_rule(rule) or (path, rule["rule"]) not in before:
            continue
        outcome = evaluate_rule(rule["rule"], value, before[(path, rule["rule"])])
        if outcome is not True:
            detail = "" if outcome is False else f" ({outcome})"
            violations.append(Violation(path, rule.get("message", rule["rule"]) + detail))
    return violations
