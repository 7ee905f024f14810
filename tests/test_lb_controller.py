"""AWS Load Balancer Controller: IAM (trust, upstream policy), Pod Identity, Helm release and its ordering."""

from __future__ import annotations

import json

import pytest

from infra.config.system_nodes import SYSTEM_NODE_SELECTOR
from infra.lb_controller import CHART_REPOSITORY, POLICY_FILE, SERVICE_ACCOUNT
from infra.policies import POLICIES, fill_policy

COMPONENT = "eks-gpu-spot:index:LoadBalancerController"
RELEASE = "kubernetes:helm.sh/v3:Release"
ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
MANAGED_POLICY_MAX_CHARS = 6144  # IAM counts the document without whitespace
# Longest partition name: GovCloud ARNs make the filled document longest.
LONGEST_PARTITION = "aws-us-gov"


def lbc_release(run):
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == "aws-load-balancer-controller")


def lbc_children(run):
    component = run.one(COMPONENT)
    return [r for r in run.registrations if r.parent == component.urn]


def test_role_is_trusted_by_eks_pod_identity_only(stack):
    trust = json.loads(stack.one(ROLE, "lb-controller-role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ]


def test_pod_identity_binds_the_chart_service_account_to_the_role(stack):
    association = stack.one(ASSOCIATION, "lb-controller-pod-identity").inputs
    role = stack.one(ROLE, "lb-controller-role")
    assert association["namespace"] == "kube-system"
    assert association["serviceAccount"] == "aws-load-balancer-controller"
    assert association["clusterName"] == stack.outputs["cluster_name"]
    assert association["roleArn"].endswith(":role/lb-controller-role")
    assert role.urn in stack.one(ASSOCIATION, "lb-controller-pod-identity").dependencies


def test_policy_is_attached_to_the_controller_role(stack):
    attachment = stack.one(ATTACHMENT, "lb-controller-policy")
    policy = stack.one(POLICY, "lb-controller-policy")
    assert attachment.inputs["role"] == "lb-controller-role"
    assert attachment.inputs["policyArn"].endswith(":policy/lb-controller-policy")
    assert set(attachment.dependencies) == {policy.urn, stack.one(ROLE, "lb-controller-role").urn}


def test_policy_arns_take_the_partition_so_govcloud_and_china_work(stack):
    template = (POLICIES / POLICY_FILE).read_text()
    assert "arn:aws:" not in template and "arn:${partition}:" in template
    document = json.loads(stack.one(POLICY, "lb-controller-policy").inputs["policy"])
    arns = [arn for s in document["Statement"] for arn in _as_sorted_list(s["Resource"]) if arn != "*"]
    assert arns and all(arn.startswith("arn:aws:") for arn in arns)  # the offline engine's partition


def test_helm_release_chart_repository_version_and_namespace(stack):
    release = lbc_release(stack).inputs
    assert release["name"] == "aws-load-balancer-controller"
    assert release["repositoryOpts"]["repo"] == CHART_REPOSITORY == "https://aws.github.io/eks-charts"
    assert release["version"] == "3.5.0"
    assert release["namespace"] == "kube-system"


def test_helm_values_name_cluster_region_vpc_and_pin_the_service_account(render):
    run = render(**{"aws:region": "eu-west-1"})
    values = lbc_release(run).inputs["values"]
    assert values["clusterName"] == run.outputs["cluster_name"]
    assert values["region"] == "eu-west-1" == run.outputs["region"]
    assert values["vpcId"] == run.outputs["vpc_id"]
    assert values["serviceAccount"] == {"create": True, "name": SERVICE_ACCOUNT}
    assert (
        values["serviceAccount"]["name"] == run.one(ASSOCIATION, "lb-controller-pod-identity").inputs["serviceAccount"]
    )


def test_controller_runs_two_replicas_on_the_system_nodes(stack):
    values = lbc_release(stack).inputs["values"]
    assert values["replicaCount"] == 2
    assert values["nodeSelector"] == SYSTEM_NODE_SELECTOR
    assert values["nodeSelector"] == stack.one("aws:eks/nodeGroup:NodeGroup").inputs["labels"]


def test_service_mutator_webhook_is_off_so_parallel_charts_can_create_services(stack):
    assert lbc_release(stack).inputs["values"]["enableServiceMutatorWebhook"] is False


def test_release_waits_for_nodes_pod_identity_agent_association_and_policy(stack):
    release = lbc_release(stack)
    assert stack.depends_on(release, stack.one("aws:eks/nodeGroup:NodeGroup"))
    assert stack.depends_on(release, stack.one("aws:eks/addon:Addon", "cluster-eks-pod-identity-agent"))
    assert stack.depends_on(release, stack.one(ASSOCIATION, "lb-controller-pod-identity"))
    assert stack.depends_on(release, stack.one(ATTACHMENT, "lb-controller-policy"))


def test_release_does_not_wait_for_anything_of_karpenter(stack):
    release = lbc_release(stack)
    # The cluster's security-group discovery tag is keyed "karpenter.sh/discovery" but is no Karpenter deployment.
    karpenter = [r for r in stack.registrations if "karpenter" in r.name.lower() or "karpenter" in r.type.lower()]
    waits_for = [r.name for r in karpenter if stack.depends_on(release, r)]
    assert waits_for == [], f"the LB controller must deploy in parallel with Karpenter, but waits for {waits_for}"
    mentions = [r.name for r in lbc_children(stack) if "karpenter" in f"{r.name} {r.type}".lower()]
    assert mentions == []
    assert {r.type for r in lbc_children(stack)} == {RELEASE, ROLE, POLICY, ATTACHMENT, ASSOCIATION}


def test_component_children_are_parented_to_it(stack):
    children = {r.name for r in lbc_children(stack)}
    assert children == {
        "lb-controller-role",
        "lb-controller-policy",
        "lb-controller-pod-identity",
        "lb-controller-chart",
    }
    # Names are shared by policy and attachment; both must be children.
    assert len(lbc_children(stack)) == 5


def test_policy_fits_the_managed_policy_size_limit_in_every_partition():
    document = fill_policy(POLICY_FILE, {"partition": LONGEST_PARTITION})
    compact = json.dumps(document, separators=(",", ":"))
    assert len(compact) <= MANAGED_POLICY_MAX_CHARS, f"{len(compact)} characters"


def test_policy_grants_exactly_the_upstream_iam_policy(reference):
    upstream = json.loads((reference / "aws-load-balancer-controller" / "iam_policy.json").read_text())
    ours = fill_policy(POLICY_FILE, {"partition": "aws"})
    assert ours["Version"] == upstream["Version"]
    theirs = [_normalised(s) for s in upstream["Statement"]]
    mine = [_normalised(s) for s in ours["Statement"]]
    missing = [s for s in theirs if s not in mine]
    extra = [s for s in mine if s not in theirs]
    assert not missing and not extra, (
        "policies/aws-load-balancer-controller.json differs from upstream iam_policy.json\n"
        f"missing (upstream only):\n{json.dumps(missing, indent=1)}\nextra (ours only):\n{json.dumps(extra, indent=1)}"
    )
    assert len(mine) == len(theirs)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Action": "a:B", "Resource": "*"}, {"Action": ["a:B"], "Resource": ["*"]}),
        (
            {"Action": ["x:Y", "a:B"], "Condition": {"StringEquals": {"k": ["b", "a"]}}},
            {"Action": ["a:B", "x:Y"], "Condition": {"StringEquals": {"k": ["a", "b"]}}},
        ),
        ({"Condition": {"Null": {"k": "false"}}}, {"Condition": {"Null": {"k": ["false"]}}}),
    ],
)
def test_statement_normalisation_ignores_list_order_and_single_strings(statement, expected):
    assert _normalised(statement) == expected


def _as_sorted_list(value):
    return sorted([value] if isinstance(value, str) else value)


def _normalised(statement: dict) -> dict:
    """Same grant, one spelling: Action/Resource and every condition value as sorted lists."""
    result = dict(statement)
    for key in ("Action", "NotAction", "Resource", "NotResource"):
        if key in result:
            result[key] = _as_sorted_list(result[key])
    if "Condition" in result:
        result["Condition"] = {
            operator: {key: _as_sorted_list(value) for key, value in conditions.items()}
            for operator, conditions in result["Condition"].items()
        }
    return result
