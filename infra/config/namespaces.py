"""Keys outside the project's namespace. A namespace is accepted only if it is this project's or belongs to a Pulumi
package the program uses: `aws:` keys are the AWS provider's (checked against its own config keys, read from the
installed pulumi_aws package), `kubernetes:`, `eks:`, `random:` theirs, `pulumi:` the engine's. Any other namespace
is an error: a near miss (`eks-gpu-spt:`, `eks-spot-gpu:`, `asw:`) gets a did-you-mean; another package's
(`awsx:`, `tls:`) configures nothing this program creates, so a value there would be silently ignored.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.config.convert import PROJECT
from infra.config.errors import ConfigProblem

AWS = "aws"
# The Pulumi packages this program uses (pyproject.toml: pulumi-aws, pulumi-kubernetes, pulumi-eks, pulumi-random)
# and the engine's own namespace.
PACKAGES = (AWS, "kubernetes", "eks", "random", "pulumi")
KNOWN_NAMESPACES = (PROJECT, *PACKAGES)


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


def namespace_problems(raw: Mapping[str, Any], project_keys: Sequence[str] = ()) -> list[ConfigProblem]:
    """An `aws:` key the provider does not have, and every namespace that is neither the project's nor a package's
    the program uses (with a did-you-mean for a near miss, or for a project key under another namespace)."""
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
        close = closest_namespace(namespace)
        if close:
            hint = f"did you mean {close!r} ({close}:{key})? "
        elif key in project_keys:
            hint = f"did you mean '{PROJECT}:{key}'? "
        else:
            hint = ""
        why = (
            f"unknown namespace {namespace!r}; {hint}a namespace is this project's ({PROJECT}) or a package's the "
            f"program uses ({', '.join(PACKAGES)}); any other is ignored by everything here"
        )
        problems.append(ConfigProblem(full_key, value, why))
    return problems


def closest_namespace(namespace: str) -> str | None:
    """A known namespace `namespace` is a typo of: a letter or two away, or the same words in another order
    (`eks-spot-gpu`)."""
    for known in KNOWN_NAMESPACES:
        if edit_distance(namespace, known) <= _typo_distance(known):
            return known
        if sorted(namespace.split("-")) == sorted(known.split("-")):
            return known
    return None


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
