"""Keys outside the project's namespace: `aws:` keys are the AWS provider's (checked against its own config keys,
read from the installed pulumi_aws package), `kubernetes:`, `pulumi:` and other providers' are theirs; a namespace
that is a near miss of one of these (`eks-gpu-spt:`, `asw:`) is a typo, not a provider."""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.config.convert import PROJECT
from infra.config.errors import ConfigProblem

AWS = "aws"
# Namespaces set on purpose in stack files: the providers this program uses and the engine's own; and other Pulumi
# providers one or two letters away from them, which are not typos.
KNOWN_NAMESPACES = (PROJECT, AWS, "kubernetes", "pulumi", "eks", "random")
OTHER_PROVIDERS = ("awsx", "aws-native")


def _typo_distance(name: str) -> int:
    """How far a typo may be: one letter for short names (tls, gcp are other providers), two for longer ones."""
    return 1 if len(name) <= 4 else 2


_CONFIG_GET = re.compile(r"__config__\.get\w*\('([A-Za-z0-9]+)'")


@functools.cache
def aws_provider_keys() -> frozenset[str]:
    """The AWS provider's config keys as a stack file spells them (camelCase), read from pulumi_aws/config/vars.py
    (`__config__.get('assumeRoles')` ...) without importing the SDK. Empty if the package is not installed."""
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    source = Path(next(iter(spec.submodule_search_locations))) / "config" / "vars.py"
    return frozenset(_CONFIG_GET.findall(source.read_text(encoding="utf-8"))) if source.is_file() else frozenset()


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def namespace_problems(raw: Mapping[str, Any]) -> list[ConfigProblem]:
    """An `aws:` key the provider does not have, and a namespace one typo away from a known one."""
    problems = []
    aws_keys = aws_provider_keys()
    for full_key, value in raw.items():
        namespace, _, key = str(full_key).rpartition(":")
        if not namespace or namespace in KNOWN_NAMESPACES:
            if namespace == AWS and aws_keys and key.split(".")[0] not in aws_keys:
                hint = did_you_mean(key, aws_keys).replace("mean '", f"mean '{AWS}:")
                why = f"not a key of the AWS provider (pulumi_aws config); {hint}".rstrip()
                problems.append(ConfigProblem(full_key, value, why))
            continue
        close = [n for n in KNOWN_NAMESPACES if edit_distance(namespace, n) <= _typo_distance(n)]
        if close and namespace not in OTHER_PROVIDERS:
            why = f"unknown namespace {namespace!r}; did you mean {close[0]!r} ({close[0]}:{key})?"
            problems.append(ConfigProblem(full_key, value, why))
    return problems


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours each cost 1."""
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]
