"""Team access: EKS access entries for the IAM principals of `clusterAdmins`, `clusterViewers` and
`clusterNamespaceAdmins`.

The identity that runs `pulumi up` is cluster admin without any of this: pulumi-eks creates the cluster in API
authentication mode with `bootstrapClusterCreatorAdminPermissions`, so EKS gives the creator its own entry.

Each principal gets one `STANDARD` access entry and one policy association per access level (an admin's
`AmazonEKSClusterAdminPolicy` at cluster scope, a viewer's `AmazonEKSViewPolicy` at cluster scope, a namespace
admin's `AmazonEKSAdminPolicy` at namespace scope). Resource names come from the principal's ARN, not from its
position in a list: `<component>-<role or user name>-<8 hex of sha256(ARN)>`, so removing or reordering one
principal never replaces the others, and moving a principal from viewer to admin keeps its entry and only swaps
the association.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.cluster import Cluster
from infra.config import StackConfig

CLUSTER_ADMIN_POLICY = "AmazonEKSClusterAdminPolicy"
VIEW_POLICY = "AmazonEKSViewPolicy"
NAMESPACE_ADMIN_POLICY = "AmazonEKSAdminPolicy"
# Short suffixes of the association names, per policy.
LEVELS = {CLUSTER_ADMIN_POLICY: "admin", VIEW_POLICY: "view", NAMESPACE_ADMIN_POLICY: "namespace-admin"}
_SLUG_MAX = 32


def access_policy_arn(partition: pulumi.Input[str], policy: str) -> pulumi.Output[str]:
    """ARN of an EKS access policy (`aws eks list-access-policies`): they live in the `aws` pseudo-account."""
    return pulumi.Output.concat("arn:", partition, ":eks::aws:cluster-access-policy/", policy)


def principal_slug(arn: str) -> str:
    """A readable, stable resource-name part for a principal: its role or user name and a short hash of the ARN."""
    name = re.sub(r"[^a-z0-9-]+", "-", arn.rsplit("/", 1)[-1].lower()).strip("-")[:_SLUG_MAX].strip("-")
    digest = hashlib.sha256(arn.encode()).hexdigest()[:8]
    return f"{name or 'principal'}-{digest}"


@dataclass(frozen=True)
class Grant:
    """One access policy of one principal: cluster scope, or namespace scope with its namespaces."""

    principal_arn: str
    policy: str
    namespaces: tuple[str, ...] = ()


def grants(cfg: StackConfig) -> list[Grant]:
    """Every (principal, policy) pair the config asks for, in config order."""
    return [
        *(Grant(arn, CLUSTER_ADMIN_POLICY) for arn in cfg.cluster_admins),
        *(Grant(arn, VIEW_POLICY) for arn in cfg.cluster_viewers),
        *(Grant(arn, NAMESPACE_ADMIN_POLICY, tuple(ns)) for arn, ns in cfg.cluster_namespace_admins.items()),
    ]


@dataclass(frozen=True)
class ClusterAccessArgs:
    cluster: Cluster
    config: StackConfig


class ClusterAccess(pulumi.ComponentResource):
    """STANDARD access entries and their access policy associations for the team's IAM principals."""

    entries: dict[str, aws.eks.AccessEntry]
    """Principal ARN -> its access entry."""
    associations: list[aws.eks.AccessPolicyAssociation]

    def __init__(self, name: str, args: ClusterAccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:ClusterAccess", name, None, opts)
        cluster = args.cluster
        self.entries = {}
        self.associations = []
        for grant in grants(args.config):
            slug = principal_slug(grant.principal_arn)
            entry = self.entries.get(grant.principal_arn)
            if entry is None:  # a viewer who is also a namespace admin has one entry and two associations
                entry = aws.eks.AccessEntry(
                    f"{name}-{slug}",
                    cluster_name=cluster.name,
                    principal_arn=grant.principal_arn,
                    type="STANDARD",
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.entries[grant.principal_arn] = entry
            scope = (
                aws.eks.AccessPolicyAssociationAccessScopeArgs(type="namespace", namespaces=list(grant.namespaces))
                if grant.namespaces
                else aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster")
            )
            self.associations.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-{slug}-{LEVELS[grant.policy]}",
                    cluster_name=cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=access_policy_arn(cluster.partition, grant.policy),
                    access_scope=scope,
                    # EKS refuses an association for a principal without an entry.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
                )
            )

        self.register_outputs({"principal_arns": sorted(self.entries)})
