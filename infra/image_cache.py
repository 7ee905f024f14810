"""Image cache: ECR pull-through cache rules so that nodes pull public images from the account's private ECR.

One rule per upstream registry of `infra/data/image_cache.json` that needs no credentials (imageCache), plus the
credentialed ones the stack opts in to (imageCacheCredentials: prefix -> Secrets Manager secret name). A repository
creation template per prefix gives every repository ECR creates on a first pull encryption, mutable tags (the cache
re-syncs a tag from upstream) and a lifecycle policy (policies/image-cache-lifecycle.json). Both node roles may create
repositories and import upstream images only under these prefixes (policies/node-image-cache.json).

Workloads reference `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<upstream repository>:<tag>` directly
(the stack output `image_cache`): Bottlerocket's registry mirrors send no ECR credentials to a mirror (README).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.config import IMAGE_CACHE_REGISTRIES, StackConfig
from infra.policies import fill_policy

NODE_POLICY = "node-image-cache.json"
LIFECYCLE_POLICY = "image-cache-lifecycle.json"


@dataclass(frozen=True)
class CachedRegistry:
    prefix: str
    upstream: str
    secret_name: str | None = None


def cached_registries(cfg: StackConfig) -> list[CachedRegistry]:
    """The registries this stack caches, in the data file's order: those without credentials, and the opted-in."""
    if not cfg.image_cache:
        return []
    return [
        CachedRegistry(prefix, entry["upstream"], cfg.image_cache_credentials.get(prefix))
        for prefix, entry in IMAGE_CACHE_REGISTRIES.items()
        if not entry["credentials"] or prefix in cfg.image_cache_credentials
    ]


def node_policy_document(partition: str, region: str, account: str, prefixes: list[str]) -> str:
    """policies/node-image-cache.json with one repository ARN pattern (`repository/<prefix>/*`) per prefix."""
    documents = [
        fill_policy(NODE_POLICY, {"partition": partition, "region": region, "account": account, "prefix": prefix})
        for prefix in prefixes
    ]
    document = documents[0]
    for i, statement in enumerate(document["Statement"]):
        statement["Resource"] = [d["Statement"][i]["Resource"] for d in documents]
    return json.dumps(document, separators=(",", ":"))


@dataclass(frozen=True)
class ImageCacheArgs:
    config: StackConfig
    partition: pulumi.Input[str]
    account_id: pulumi.Input[str]
    node_roles: Mapping[str, aws.iam.Role]
    """Label -> node role (the system node group's and Karpenter's); each gets the node policy."""


class ImageCache(pulumi.ComponentResource):
    """Pull-through cache rules, their repository creation templates and the nodes' permission to fill them."""

    registries: dict[str, pulumi.Output[str]]
    """Upstream registry -> its private prefix, `<account>.dkr.ecr.<region>.<dns suffix>/<prefix>`."""
    node_policy: aws.iam.Policy

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:ImageCache", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        registries = cached_registries(cfg)
        if not registries:
            raise ValueError("ImageCache needs imageCache true (stack.py creates it only then)")
        dns_suffix = aws.get_partition_output(opts=pulumi.InvokeOptions(parent=self)).dns_suffix
        host = pulumi.Output.concat(args.account_id, ".dkr.ecr.", cfg.region, ".", dns_suffix)

        self.registries = {}
        for registry in registries:
            credential_arn = (
                aws.secretsmanager.get_secret_output(
                    name=registry.secret_name, opts=pulumi.InvokeOptions(parent=self)
                ).arn
                if registry.secret_name
                else None
            )
            aws.ecr.PullThroughCacheRule(
                f"{name}-{registry.prefix}",
                ecr_repository_prefix=registry.prefix,
                upstream_registry_url=registry.upstream,
                credential_arn=credential_arn,
                opts=child,
            )
            aws.ecr.RepositoryCreationTemplate(
                f"{name}-{registry.prefix}",
                prefix=registry.prefix,
                description=f"Pull-through cache of {registry.upstream} (eks-gpu-spot)",
                applied_fors=["PULL_THROUGH_CACHE"],
                # AES256 needs no custom role (KMS would); tags stay mutable so the cache can re-sync a tag.
                encryption_configurations=[{"encryption_type": "AES256"}],
                image_tag_mutability="MUTABLE",
                lifecycle_policy=json.dumps(fill_policy(LIFECYCLE_POLICY, {}), separators=(",", ":")),
                opts=child,
            )
            self.registries[registry.upstream] = pulumi.Output.concat(host, "/", registry.prefix)

        prefixes = [r.prefix for r in registries]
        self.node_policy = aws.iam.Policy(
            f"{name}-node",
            description="Nodes may create pull-through cache repositories and import upstream images, only "
            f"under the cache prefixes {', '.join(prefixes)}",
            policy=pulumi.Output.all(args.partition, args.account_id).apply(
                lambda v: node_policy_document(v[0], cfg.region, v[1], prefixes)
            ),
            opts=child,
        )
        for label, role in args.node_roles.items():
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{label}", role=role.name, policy_arn=self.node_policy.arn, opts=child
            )

        self.register_outputs({"registries": self.registries, "node_policy_arn": self.node_policy.arn})
