"""Keys of team access (infra/access.py): EKS access entries for IAM roles and users, and the rules between them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from infra.config.convert import DNS_LABEL, MAX_LIST_ITEMS, Section, StringListMap, Strings, check_items, key
from infra.config.errors import ConfigProblem, item_error

# EKS access entries (clusterAdmins, ...): IAM role and user names and path parts (IAM's own character set).
IAM_PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
_IAM_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,64}$")
_IAM_PATH_PART = re.compile(r"^[A-Za-z0-9+=,.@_-]+$")
_ACCOUNT_ID = re.compile(r"^[0-9]{12}$")


class AccessKeys(Section):
    # Whoever runs `pulumi up` is cluster admin besides these.
    cluster_admins: Strings = key(
        (), "IAM role or user ARNs given cluster admin (AmazonEKSClusterAdminPolicy) through EKS access entries."
    )
    cluster_viewers: Strings = key(
        (), "IAM role or user ARNs given read-only access (AmazonEKSViewPolicy) through EKS access entries."
    )
    cluster_namespace_admins: StringListMap = key(
        {}, "IAM role or user ARN -> namespaces where it gets AmazonEKSAdminPolicy (EKS access entries)."
    )

    @field_validator("cluster_admins", "cluster_viewers")
    @classmethod
    def _principals(cls, v: tuple[str, ...], info: Any) -> tuple[str, ...]:
        check_items(v, allow_empty=True)
        folded = [item.casefold() for item in v]
        for i, item in enumerate(v):
            problem = principal_problem(item, info.data.get("region"))
            if problem:
                raise item_error(i, item, problem)
            if folded[i] in folded[:i]:  # IAM names are unique regardless of case: the same principal
                first = folded.index(folded[i])
                raise item_error(i, item, f"is the same principal as index {first} (IAM names ignore case)")
        return v

    @field_validator("cluster_namespace_admins")
    @classmethod
    def _namespace_admins(cls, v: dict[str, tuple[str, ...]], info: Any) -> dict[str, tuple[str, ...]]:
        if len(v) > MAX_LIST_ITEMS:
            raise ValueError(f"has {len(v)} principals; at most {MAX_LIST_ITEMS}")
        for arn, namespaces in v.items():
            problem = principal_problem(arn, info.data.get("region"))
            if problem:
                raise item_error(arn, list(namespaces), f"the key {problem}")
            if not namespaces:
                raise item_error(arn, [], "needs at least one namespace")
            for i, namespace in enumerate(namespaces):
                if not DNS_LABEL.match(namespace):
                    raise item_error((arn, i), namespace, "is not a namespace name (a DNS label: a-z, 0-9, '-')")
                if namespace in namespaces[:i]:
                    raise item_error((arn, i), namespace, "is listed already")
        return v


def region_partition(region: str | None) -> str | None:
    """The AWS partition of a region name (None when unknown: ISO regions, or no valid region)."""
    if not region or "-iso" in region:
        return None
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def principal_problem(arn: str, region: str | None = None) -> str | None:
    """Why `arn` cannot be the principal of an EKS access entry (an IAM role or user, path allowed), or None."""
    example = "arn:aws:iam::123456789012:role/Admin"
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return f"is not an ARN; expected an IAM role or user ARN like {example}"
    _, partition, service, arn_region, account, resource = parts
    if partition not in IAM_PARTITIONS:
        return f"has partition {partition!r}; allowed: {', '.join(IAM_PARTITIONS)}"
    if not _ACCOUNT_ID.match(account):
        return f"has account {account!r}; an AWS account ID is 12 digits"
    kind, _, path_and_name = resource.partition("/")
    if service == "sts" and kind == "assumed-role":
        # arn:aws:sts::<account>:assumed-role/<role name>/<session>: the session ARN hides the role's path.
        role = path_and_name.split("/")[0] or "<role>"
        return (
            "is an assumed-role session (what `aws sts get-caller-identity` prints), not a principal EKS can grant; "
            f"give the role: probably arn:{partition}:iam::{account}:role/{role}, with its path if it has one "
            f"(`aws iam get-role --role-name {role} --query Role.Arn` prints it)"
        )
    if service != "iam" or arn_region:
        return f"is not an IAM ARN (arn:<partition>:iam::<account>:...); expected like {example}"
    if kind not in ("role", "user"):
        hint = " (for a group, grant a role its members assume)" if kind == "group" else ""
        return f"is an IAM {kind!r}; only roles (role/...) and users (user/...) can have access entries{hint}"
    *path, name = path_and_name.split("/")
    if not _IAM_NAME.match(name) or not all(_IAM_PATH_PART.match(part) for part in path):
        return f"has no valid {kind} name after {kind}/ (letters, digits and +=,.@_-, path parts separated by /)"
    expected = region_partition(region)
    if expected and partition != expected:
        return f"is in partition {partition}, but the stack's region {region} is in {expected}"
    return None


def relation_problems(cfg: Any) -> list[ConfigProblem]:
    """One principal, one access level: an admin is not also a viewer or a namespace admin (IAM ignores case)."""
    admins = [arn.casefold() for arn in cfg.cluster_admins]
    problems = [
        ConfigProblem(
            f"clusterViewers[{i}]",
            arn,
            f"is clusterAdmins[{admins.index(arn.casefold())}] already: list a principal once (admin includes view)",
        )
        for i, arn in enumerate(cfg.cluster_viewers)
        if arn.casefold() in admins
    ]
    problems += [
        ConfigProblem(
            f"clusterNamespaceAdmins.{arn}",
            list(namespaces),
            f"is clusterAdmins[{admins.index(arn.casefold())}] already: cluster admin covers every namespace",
        )
        for arn, namespaces in cfg.cluster_namespace_admins.items()
        if arn.casefold() in admins
    ]
    return problems
