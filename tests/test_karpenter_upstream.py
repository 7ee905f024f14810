"""Karpenter's IAM, queue and rules against upstream's v1.14 getting-started CloudFormation (reference data)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from infra.cluster import NODE_POLICIES
from infra.karpenter import CONTROLLER_POLICIES, UNUSED_UPSTREAM_POLICIES
from tools.offline import ACCOUNT_ID


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags as their plain scalar (enough for !Sub strings and !GetAtt targets)."""


for _tag in ("!Sub", "!GetAtt", "!Ref"):
    _CloudFormationLoader.add_constructor(_tag, lambda loader, node: loader.construct_scalar(node))


def upstream_resources(reference: Path) -> dict:
    text = (reference / "karpenter" / "cloudformation.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=_CloudFormationLoader)["Resources"]


def substitutions(run) -> dict[str, str]:
    """CloudFormation `${...}` placeholders -> this offline run's values."""
    return {
        "AWS::Partition": "aws",
        "AWS::Region": "us-west-2",
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::URLSuffix": "amazonaws.com",
        "ClusterName": run.outputs["cluster_name"],
        "KarpenterNodeRole.Arn": run.one("aws:eks/accessEntry:AccessEntry", "karpenter-node").inputs["principalArn"],
        "KarpenterInterruptionQueue.Arn": f"arn:aws:sqs:us-west-2:{ACCOUNT_ID}:{run.outputs['cluster_name']}",
    }


def resolve_sub(text: str, values: dict[str, str]) -> str:
    unresolved = set(re.findall(r"\$\{([^}]+)\}", text)) - set(values)
    assert not unresolved, f"upstream uses placeholders this test cannot resolve: {sorted(unresolved)}"
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], text)


def policy_slug(logical_id: str) -> str:
    """NodeLifecyclePolicy -> node-lifecycle, IAMIntegrationPolicy -> iam-integration."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]+", logical_id.removesuffix("Policy"))
    return "-".join(w.lower() for w in words)


def normalized(statement: dict) -> dict:
    """Single values as one-item lists, condition values as strings: the spellings AWS treats as equal."""

    def norm(value):
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        values = value if isinstance(value, list) else [value]
        return sorted(str(v).lower() if isinstance(v, bool) else str(v) for v in values)

    return {k: norm(v) if k != "Sid" else v for k, v in statement.items()}


def describe_differences(ours: list[dict], theirs: list[dict]) -> list[str]:
    ours_by_sid = {s.get("Sid"): normalized(s) for s in ours}
    theirs_by_sid = {s.get("Sid"): normalized(s) for s in theirs}
    problems = [f"missing statement {sid}" for sid in theirs_by_sid.keys() - ours_by_sid.keys()]
    problems += [f"extra statement {sid}" for sid in ours_by_sid.keys() - theirs_by_sid.keys()]
    for sid in ours_by_sid.keys() & theirs_by_sid.keys():
        for key in sorted(ours_by_sid[sid].keys() | theirs_by_sid[sid].keys()):
            if ours_by_sid[sid].get(key) != theirs_by_sid[sid].get(key):
                problems.append(f"{sid}.{key}: ours {ours_by_sid[sid].get(key)} upstream {theirs_by_sid[sid].get(key)}")
    return problems


def test_controller_policies_match_upstream_statement_for_statement(stack, reference):
    values = substitutions(stack)
    upstream = {
        policy_slug(logical_id): json.loads(resolve_sub(resource["Properties"]["PolicyDocument"], values))
        for logical_id, resource in upstream_resources(reference).items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }
    assert sorted(upstream) == sorted(CONTROLLER_POLICIES + UNUSED_UPSTREAM_POLICIES), "upstream split differs"
    problems = []
    for slug, document in upstream.items():
        if slug in UNUSED_UPSTREAM_POLICIES:
            continue
        ours = json.loads(stack.one("aws:iam/policy:Policy", f"karpenter-controller-{slug}").inputs["policy"])
        problems += [f"{slug}: {p}" for p in describe_differences(ours["Statement"], document["Statement"])]
    assert not problems, "controller policies differ from upstream:\n" + "\n".join(problems)


def test_node_role_matches_upstream(stack, reference):
    upstream = upstream_resources(reference)["KarpenterNodeRole"]["Properties"]
    values = substitutions(stack)
    upstream_arns = {resolve_sub(arn, values) for arn in upstream["ManagedPolicyArns"]}
    assert upstream_arns == {f"arn:aws:iam::aws:policy/{p}" for p in NODE_POLICIES}
    ours = json.loads(stack.one("aws:iam/role:Role", "karpenter-node").inputs["assumeRolePolicy"])["Statement"]
    theirs = [
        {**s, "Principal": {"Service": resolve_sub(s["Principal"]["Service"], values)}}
        for s in upstream["AssumeRolePolicyDocument"]["Statement"]
    ]
    assert [normalized(s) for s in ours] == [normalized(s) for s in theirs]


def test_queue_and_its_policy_match_upstream(stack, reference):
    resources = upstream_resources(reference)
    queue = stack.one("aws:sqs/queue:Queue", "karpenter-interruption").inputs
    assert (
        queue["messageRetentionSeconds"]
        == resources["KarpenterInterruptionQueue"]["Properties"]["MessageRetentionPeriod"]
    )
    assert (
        queue["sqsManagedSseEnabled"] is resources["KarpenterInterruptionQueue"]["Properties"]["SqsManagedSseEnabled"]
    )
    queue_arn = substitutions(stack)["KarpenterInterruptionQueue.Arn"]
    theirs = [
        {k: (queue_arn if k == "Resource" else v) for k, v in s.items()}
        for s in resources["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    ]
    ours = json.loads(stack.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruption").inputs["policy"])
    # Upstream's first statement has no Sid; compare without Sids, in order.
    strip = [{k: v for k, v in normalized(s).items() if k != "Sid"} for s in ours["Statement"]]
    assert strip == [{k: v for k, v in normalized(s).items() if k != "Sid"} for s in theirs]


def test_interruption_rules_match_upstream(stack, reference):
    upstream = sorted(
        json.dumps(r["Properties"]["EventPattern"], sort_keys=True)
        for r in upstream_resources(reference).values()
        if r["Type"] == "AWS::Events::Rule"
    )
    ours = sorted(
        json.dumps(json.loads(r.inputs["eventPattern"]), sort_keys=True)
        for r in stack.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.name.startswith("karpenter-")
    )
    assert ours == upstream
    assert len(ours) == 5
