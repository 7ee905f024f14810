"""IAM policy documents live in policies/ as JSON; `${name}` placeholders are filled from Pulumi outputs."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pulumi

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def policy_template(filename: str) -> string.Template:
    return string.Template((POLICIES / filename).read_text(encoding="utf-8"))


def fill_policy(filename: str, values: dict[str, str]) -> dict:
    """The document with every `${name}` replaced; a missing value is a KeyError naming it."""
    return json.loads(policy_template(filename).substitute(values))


def render_policy(filename: str, **values: pulumi.Input[str]) -> pulumi.Output[str]:
    """The filled document as compact JSON, once every value is known."""
    return pulumi.Output.all(**values).apply(lambda v: json.dumps(fill_policy(filename, v), separators=(",", ":")))


def pod_identity_trust_policy() -> str:
    """Trust policy of every controller role: EKS Pod Identity assumes it and tags the session."""
    return json.dumps(fill_policy("pod-identity-trust.json", {}))
