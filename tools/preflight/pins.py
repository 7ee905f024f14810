"""The stack's pins that only AWS can confirm, asked before `pulumi up` rather than learned ten minutes into it:

- each EKS add-on version the stack installs exists for its Kubernetes version (`DescribeAddonVersions`);
- the exact `configurationValues` the program sends validate against that version's schema
  (`DescribeAddonConfiguration`: a JSON schema; EKS rejects unknown keys);
- the pinned Bottlerocket release has an image for the stack's Kubernetes version, for each variant and
  architecture a node pool admits (the public SSM parameters Karpenter resolves the node class alias with);
- with a training pool and an existing cluster, the cluster security group allows all traffic from and to itself.

A pin AWS does not have is blocking (exit 3); a question AWS did not answer is skipped with its reason (exit 4).
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from infra.addons import AddonPlan, addon_plan, stand_in_cluster_name
from infra.catalog.selection import ARCH
from infra.config import StackConfig
from tools.preflight.aws import Aws, Skip
from tools.preflight.checks import guarded
from tools.preflight.report import PinReport

PIN_FILE = "infra/data/eks_addons.json"
# Karpenter resolves `bottlerocket@v<version>` through these public parameters, one per variant and architecture
# (aws/karpenter-provider-aws v1.14.1 pkg/providers/amifamily/bottlerocket.go lines 49-52:
# `/aws/service/bottlerocket/aws-k8s-%s-nvidia/x86_64/%s/image_id`); `latest/image_version` holds the newest release
# as "<version>-<commit>" (EKS user guide, "Retrieve recommended Bottlerocket AMI IDs").
BOTTLEROCKET_PARAMETER = "/aws/service/bottlerocket/aws-k8s-{kubernetes}{flavor}/{arch}/{version}/{leaf}"
# Kubernetes architecture label -> Bottlerocket's architecture in the parameter path.
BOTTLEROCKET_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
SCHEMA_ERRORS_SHOWN = 3
# EKS's cluster security group "Inbound All All Self" and the outbound rule to itself "for EFA traffic" (EKS user
# guide, sec-group-reqs); EFA needs both (EC2 user guide, "Prepare an EFA-enabled security group").
ALL_TRAFFIC = "-1"


def check_pins(aws: Aws, cfg: StackConfig, config_target: str = "") -> PinReport:
    report = PinReport(config_target=config_target)
    for plan in addon_plan(cfg, stand_in_cluster_name(cfg)):
        guarded(report, f"add-on {plan.name}", check_addon, aws, cfg, plan, report)
    guarded(report, "node images", check_node_images, aws, cfg, report)
    training = [pool.name for pool in cfg.effective_gpu_pools if pool.efa]
    if training:
        guarded(report, "EFA security group", check_efa_security_group, aws, cfg, training, report)
    return report


# --- add-ons ---------------------------------------------------------------------------------------------------------


def version_source(cfg: StackConfig, addon: str) -> str:
    """Where the pinned version comes from: the stack's own key, else the pin file's entry."""
    if addon in cfg.addon_versions:
        return f"stack key addonVersions.{addon}"
    return f"{PIN_FILE} versions.{cfg.kubernetes_version}.{addon}"


def set_version(report: PinReport, addon: str, version: str) -> str:
    path = f"'addonVersions[\"{addon}\"]'"
    return f"`{report.config_command(f'set --path {path} {version}')}`"


def _versions(aws: Aws, region: str, addon: str, kubernetes: str | None) -> list[dict[str, Any]]:
    params = {"addonName": addon, **({"kubernetesVersion": kubernetes} if kubernetes else {})}
    found = aws.pages("eks", region, "DescribeAddonVersions", "addons", token="nextToken", **params)
    return [v for a in found if a.get("addonName") == addon for v in a.get("addonVersions", [])]


def check_addon(aws: Aws, cfg: StackConfig, plan: AddonPlan, report: PinReport) -> None:
    kubernetes, region = cfg.kubernetes_version, cfg.region
    with aws.check():
        offered = _versions(aws, region, plan.name, kubernetes)
        if not any(v["addonVersion"] == plan.version for v in offered):
            # Once more without the Kubernetes filter: a version that exists for other releases says more.
            elsewhere = [
                c["clusterVersion"]
                for v in _versions(aws, region, plan.name, None)
                if v["addonVersion"] == plan.version
                for c in v.get("compatibilities", [])
            ]
            report.blocking.append(_missing_version(cfg, plan, offered, sorted(set(elsewhere)), report))
            return
    report.addons[plan.name] = plan.version
    report.checked.add("add-on versions")
    if plan.configuration is not None:
        check_configuration(aws, cfg, plan, report)


def _missing_version(
    cfg: StackConfig, plan: AddonPlan, offered: list[dict[str, Any]], elsewhere: list[str], report: PinReport
) -> str:
    kubernetes = cfg.kubernetes_version
    where = (
        f"it exists for Kubernetes {', '.join(elsewhere)} only"
        if elsewhere
        else "EKS does not have it for any Kubernetes version"
    )
    message = (
        f"add-on {plan.name} {plan.version} ({version_source(cfg, plan.name)}) is not offered for Kubernetes "
        f"{kubernetes} in {cfg.region}: {where}; the cluster would be created and the add-on then fail"
    )
    default = [v["addonVersion"] for v in offered for c in v.get("compatibilities", []) if c.get("defaultVersion")]
    choice = default[0] if default else (offered[0]["addonVersion"] if offered else None)
    if choice:
        label = "EKS's default" if default else "the newest"
        return f"{message}; {label} for {kubernetes}: {set_version(report, plan.name, choice)}"
    return f"{message}; EKS offers no {plan.name} for Kubernetes {kubernetes}: choose another kubernetesVersion"


def check_configuration(aws: Aws, cfg: StackConfig, plan: AddonPlan, report: PinReport) -> None:
    """The configuration the program sends, validated with the schema EKS validates it with."""
    label = f"add-on {plan.name} configuration"
    try:
        with aws.check():
            answer = aws.call(
                "eks", cfg.region, "DescribeAddonConfiguration", addonName=plan.name, addonVersion=plan.version
            )
    except Skip as skip:
        report.skipped.append(f"{label}: {skip}")
        return
    text = answer.get("configurationSchema")
    if not text:
        report.skipped.append(f"{label}: EKS returned no configuration schema for {plan.version}")
        return
    try:
        schema = json.loads(text)
        validator_class = validator_for(schema)
        validator_class.check_schema(schema)
        errors = sorted(validator_class(schema).iter_errors(plan.configuration), key=lambda e: list(e.absolute_path))
    except (ValueError, SchemaError) as error:
        report.skipped.append(f"{label}: the schema EKS returned is not a usable JSON schema ({type(error).__name__})")
        return
    report.checked.add("add-on configuration")
    if not errors:
        return
    shown = [f"{_path(e.absolute_path)}: {e.message}" for e in errors[:SCHEMA_ERRORS_SHOWN]]
    more = f" and {len(errors) - SCHEMA_ERRORS_SHOWN} more" if len(errors) > SCHEMA_ERRORS_SHOWN else ""
    report.blocking.append(
        f"add-on {plan.name} {plan.version} ({version_source(cfg, plan.name)}) rejects the configuration "
        f"{plan.built_by} sends: {'; '.join(shown)}{more}; EKS refuses the add-on with it. Pin a version whose "
        f"schema has these keys ({set_version(report, plan.name, '<version>')}; `aws eks describe-addon-configuration "
        f"--addon-name {plan.name} --addon-version <version>` shows its schema)"
    )


def _path(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "(top level)"


# --- node images -------------------------------------------------------------------------------------------------


def image_parameters(cfg: StackConfig) -> dict[str, tuple[str, str]]:
    """The SSM parameter of each image the stack's node pools need -> (variant, arch). The default pool runs the
    standard variant, GPU pools (a stack always has one) the NVIDIA one; both admit only ARCH
    (infra/catalog/selection.py, infra/node_pools.py default_pool_spec)."""
    return {
        BOTTLEROCKET_PARAMETER.format(
            kubernetes=cfg.kubernetes_version,
            flavor=flavor,
            arch=BOTTLEROCKET_ARCH[ARCH],
            version=cfg.bottlerocket_version,
            leaf="image_id",
        ): (f"aws-k8s-{cfg.kubernetes_version}{flavor}", BOTTLEROCKET_ARCH[ARCH])
        for flavor in ("", "-nvidia")
    }


def latest_parameter(name: str) -> str:
    return re.sub(r"/[^/]+/image_id$", "/latest/image_version", name)


def check_node_images(aws: Aws, cfg: StackConfig, report: PinReport) -> None:
    wanted = image_parameters(cfg)
    latest = {name: latest_parameter(name) for name in wanted}
    with aws.check():
        answer = aws.call("ssm", cfg.region, "GetParameters", Names=[*wanted, *latest.values()])
    values = {p["Name"]: p.get("Value") for p in answer.get("Parameters", [])}
    if not values and not answer.get("InvalidParameters"):
        raise ValueError("GetParameters answered neither Parameters nor InvalidParameters")
    report.checked.add("node images")
    for name, (variant, arch) in wanted.items():
        report.images[name] = values.get(name)
        if values.get(name):
            continue
        newest = (values.get(latest[name]) or "").split("-")[0]
        fix = (
            f"`{report.config_command(f'set bottlerocketVersion {newest}')}` (the newest {variant} release)"
            if newest
            else f"Bottlerocket publishes no {variant} image in {cfg.region}: choose another kubernetesVersion"
        )
        report.blocking.append(
            f"Bottlerocket {cfg.bottlerocket_version} (stack key bottlerocketVersion) has no {variant} {arch} image "
            f"in {cfg.region} (SSM parameter {name} not found): Karpenter's alias {cfg.karpenter_node_alias} "
            f"resolves no AMI and no node launches; {fix}"
        )


# --- EFA security group ------------------------------------------------------------------------------------------


def stack_clusters(aws: Aws, cfg: StackConfig) -> list[str]:
    """Clusters this stack's program could have created: `<clusterNamePrefix>-` and 8 random lowercase letters or
    digits (infra/stack.py RandomString length 8, no upper case or specials). Stacks sharing a prefix in one region
    cannot be told apart here: each match is checked and named."""
    pattern = re.compile(rf"^{re.escape(cfg.cluster_name_prefix)}-[a-z0-9]{{8}}$")
    names = aws.pages("eks", cfg.region, "ListClusters", "clusters", token="nextToken")
    return sorted(n for n in names if isinstance(n, str) and pattern.match(n))


def check_efa_security_group(aws: Aws, cfg: StackConfig, training: list[str], report: PinReport) -> None:
    with aws.check():
        clusters = stack_clusters(aws, cfg)
        if not clusters:
            report.notes.append(
                f"EFA security group: no cluster named {cfg.cluster_name_prefix}-<8 characters> in {cfg.region} yet; "
                "EKS creates its cluster security group with both self rules"
            )
            report.checked.add("EFA security group")
            return
        for cluster in clusters:
            described = aws.call("eks", cfg.region, "DescribeCluster", name=cluster)["cluster"]
            group = described["resourcesVpcConfig"]["clusterSecurityGroupId"]
            rules = aws.pages(
                "ec2",
                cfg.region,
                "DescribeSecurityGroupRules",
                "SecurityGroupRules",
                Filters=[{"Name": "group-id", "Values": [group]}],
            )
            missing = [
                direction
                for direction, egress in (("inbound", False), ("outbound", True))
                if not any(_all_from_self(rule, group) and bool(rule.get("IsEgress")) == egress for rule in rules)
            ]
            report.checked.add("EFA security group")
            if missing:
                report.blocking.append(_missing_rules(cluster, group, missing, training))


def _all_from_self(rule: dict[str, Any], group: str) -> bool:
    return rule.get("IpProtocol") == ALL_TRAFFIC and (rule.get("ReferencedGroupInfo") or {}).get("GroupId") == group


def _missing_rules(cluster: str, group: str, missing: list[str], training: list[str]) -> str:
    command = {
        "inbound": "authorize-security-group-ingress",
        "outbound": "authorize-security-group-egress",
    }
    permissions = f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={group}}}]'"
    fixes = " and ".join(f"`aws ec2 {command[d]} --group-id {group} --ip-permissions {permissions}`" for d in missing)
    return (
        f"cluster {cluster}'s security group {group} has no {' or '.join(missing)} all-traffic rule to itself: EFA "
        f"traffic of the training pools ({', '.join(training)}) is dropped (older clusters lack the outbound one); "
        f"{fixes}"
    )
