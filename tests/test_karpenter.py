"""Karpenter component: node and controller IAM, Pod Identity, interruption queue and rules, Helm releases."""

from __future__ import annotations

import json

import pytest

from infra.cluster import NODE_POLICIES
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR
from infra.karpenter import CONTROLLER_POLICIES, INTERRUPTION_EVENTS
from tools.offline import ACCOUNT_ID

ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
RELEASE = "kubernetes:helm.sh/v3:Release"
RULE = "aws:cloudwatch/eventRule:EventRule"
TARGET = "aws:cloudwatch/eventTarget:EventTarget"
QUEUE = "aws:sqs/queue:Queue"
MANAGED_POLICY_LIMIT = 6144  # characters, counted by AWS without whitespace


def controller_statements(run) -> dict[str, dict]:
    """Sid -> statement, across all controller managed policies."""
    statements = {}
    for policy in CONTROLLER_POLICIES:
        for statement in json.loads(run.one(POLICY, f"karpenter-controller-{policy}").inputs["policy"])["Statement"]:
            assert statement["Sid"] not in statements, f"Sid {statement['Sid']} appears twice"
            statements[statement["Sid"]] = statement
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def node_role_arn(run) -> str:
    return run.one("aws:eks/accessEntry:AccessEntry", "karpenter-node").inputs["principalArn"]


def queue_arn(run) -> str:
    return f"arn:aws:sqs:us-west-2:{ACCOUNT_ID}:{run.outputs['cluster_name']}"


# --- roles ---------------------------------------------------------------------------------------------------------


def test_node_role_trusts_ec2_and_has_the_four_node_policies(stack):
    trust = json.loads(stack.one(ROLE, "karpenter-node").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    attached = {r.inputs["policyArn"] for r in stack.of_type(ATTACHMENT) if r.name.startswith("karpenter-node-")}
    assert attached == {f"arn:aws:iam::aws:policy/{p}" for p in NODE_POLICIES}
    assert len(NODE_POLICIES) == 4


def test_node_role_has_an_ec2_linux_access_entry(stack):
    entry = stack.one("aws:eks/accessEntry:AccessEntry", "karpenter-node").inputs
    assert entry["type"] == "EC2_LINUX"
    assert entry["clusterName"] == stack.outputs["cluster_name"]
    assert entry["principalArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/karpenter-node"


def test_controller_role_trusts_only_eks_pod_identity(stack):
    trust = json.loads(stack.one(ROLE, "karpenter-controller").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ]


def test_pod_identity_binds_the_karpenter_service_account_to_the_controller_role(stack):
    association = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter-controller").inputs
    assert association["namespace"] == "kube-system"
    assert association["serviceAccount"] == "karpenter"
    assert association["roleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/karpenter-controller"
    assert association["clusterName"] == stack.outputs["cluster_name"]


def test_each_controller_policy_is_attached_to_the_controller_role(stack):
    attached = {r.inputs["policyArn"] for r in stack.of_type(ATTACHMENT) if r.name.startswith("karpenter-controller-")}
    assert attached == {f"arn:aws:iam::{ACCOUNT_ID}:policy/karpenter-controller-{p}" for p in CONTROLLER_POLICIES}
    assert all(
        r.inputs["role"] == "karpenter-controller"
        for r in stack.of_type(ATTACHMENT)
        if r.name.startswith("karpenter-controller-")
    )


# --- controller statements -------------------------------------------------------------------------------------------


def test_instance_launch_and_termination_are_scoped_to_this_cluster(stack):
    name = stack.outputs["cluster_name"]
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{name}": "owned"}
    requested = {f"aws:RequestTag/kubernetes.io/cluster/{name}": "owned", "aws:RequestTag/eks:eks-cluster-name": name}
    statements = controller_statements(stack)
    # Only AMIs, snapshots, security groups, subnets, reservations, placement groups go unconditioned.
    unconditioned = statements["AllowScopedEC2InstanceAccessActions"]
    assert "Condition" not in unconditioned
    assert {r.split(":")[-1] for r in unconditioned["Resource"]} == {
        "image/*",
        "snapshot/*",
        "security-group/*",
        "subnet/*",
        "capacity-reservation/*",
        "placement-group/*",
    }
    launch_template = statements["AllowScopedEC2LaunchTemplateAccessActions"]["Condition"]
    assert launch_template == {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}
    with_tags = statements["AllowScopedEC2InstanceActionsWithTags"]
    assert with_tags["Action"] == ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"]
    assert with_tags["Condition"] == {
        "StringEquals": requested,
        "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
    }
    deletion = statements["AllowScopedDeletion"]
    assert deletion["Action"] == ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"]
    assert deletion["Condition"] == {
        "StringEquals": owned,
        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
    }
    tagging = statements["AllowScopedResourceTagging"]["Condition"]
    assert tagging["StringEquals"] == owned
    assert tagging["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
    }
    creation_tagging = statements["AllowScopedResourceCreationTagging"]["Condition"]["StringEquals"]
    assert creation_tagging == {
        **requested,
        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
    }


def test_no_mutating_ec2_action_is_allowed_on_every_resource(stack):
    for sid, statement in controller_statements(stack).items():
        actions = as_list(statement["Action"])
        mutating = [a for a in actions if a.startswith("ec2:") and not a.startswith("ec2:Describe")]
        if mutating:
            assert "*" not in as_list(statement["Resource"]), f"{sid} allows {mutating} on *"
            assert all(":us-west-2:" in r for r in as_list(statement["Resource"])), sid
        if {"ec2:RunInstances", "ec2:TerminateInstances"} & set(
            actions
        ) and sid != "AllowScopedEC2InstanceAccessActions":
            assert "Condition" in statement, f"{sid} launches or terminates without a tag condition"


def test_pass_role_is_only_the_node_role_and_only_to_ec2(stack):
    pass_role = [s for s in controller_statements(stack).values() if "iam:PassRole" in as_list(s["Action"])]
    assert len(pass_role) == 1
    assert pass_role[0]["Resource"] == node_role_arn(stack)
    assert pass_role[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]}
    }


def test_instance_profile_actions_are_scoped_by_cluster_region_and_nodeclass_tags(stack):
    name = stack.outputs["cluster_name"]
    statements = controller_statements(stack)
    for sid in (
        "AllowScopedInstanceProfileCreationActions",
        "AllowScopedInstanceProfileTagActions",
        "AllowScopedInstanceProfileActions",
    ):
        statement = statements[sid]
        assert statement["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/*"
        conditions = {**statement["Condition"]["StringEquals"], **statement["Condition"]["StringLike"]}
        tag_kinds = {k.split("/")[0] for k in conditions}
        for kind in tag_kinds:
            assert conditions[f"{kind}/kubernetes.io/cluster/{name}"] == "owned", sid
            assert conditions[f"{kind}/topology.kubernetes.io/region"] == "us-west-2", sid
            assert conditions[f"{kind}/karpenter.k8s.aws/ec2nodeclass"] == "*", sid
    assert statements["AllowInstanceProfileReadActions"]["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/*"


def test_cluster_queue_and_read_only_statements(stack):
    name = stack.outputs["cluster_name"]
    cluster_arn = f"arn:aws:eks:us-west-2:{ACCOUNT_ID}:cluster/{name}"
    statements = controller_statements(stack)
    assert statements["AllowAPIServerEndpointDiscovery"]["Resource"] == cluster_arn
    assert statements["AllowAPIServerEndpointDiscovery"]["Action"] == "eks:DescribeCluster"
    sqs = [s for s in statements.values() if any(a.startswith("sqs:") for a in as_list(s["Action"]))]
    assert sqs == [statements["AllowInterruptionQueueActions"]]
    assert sqs[0]["Resource"] == queue_arn(stack)
    assert sqs[0]["Action"] == ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]
    describe = statements["AllowRegionalReadActions"]
    assert all(a.startswith("ec2:Describe") for a in describe["Action"])
    assert describe["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-west-2"}}
    assert statements["AllowSSMReadActions"]["Resource"] == "arn:aws:ssm:us-west-2::parameter/aws/service/*"
    assert statements["AllowSSMReadActions"]["Action"] == "ssm:GetParameter"
    assert "AllowZonalShiftStatusReadOnly" not in statements  # zonal shift is off (infra/karpenter.py)
    # The only statements on "*" are read-only or condition-scoped.
    on_everything = {sid for sid, s in statements.items() if s["Resource"] == "*"}
    assert on_everything == {
        "AllowRegionalReadActions",
        "AllowPricingReadActions",
        "AllowUnscopedInstanceProfileListAction",
    }


def test_controller_policies_fit_the_managed_policy_size_limit_even_for_the_longest_cluster_name(render):
    run = render(clusterNamePrefix="a" * 38)
    for policy in CONTROLLER_POLICIES:
        document = json.loads(run.one(POLICY, f"karpenter-controller-{policy}").inputs["policy"])
        size = len(json.dumps(document, separators=(",", ":")))
        assert size <= MANAGED_POLICY_LIMIT, f"{policy}: {size} characters"
    assert "a" * 38 in run.outputs["cluster_name"]


# --- interruption queue ------------------------------------------------------------------------------------------


def test_queue_is_named_for_the_cluster_short_lived_and_encrypted(stack):
    queue = stack.one(QUEUE, "karpenter-interruption").inputs
    assert queue["name"] == stack.outputs["cluster_name"]
    assert queue["messageRetentionSeconds"] == 300
    assert queue["sqsManagedSseEnabled"] is True
    assert stack.outputs["karpenter_interruption_queue"] == stack.outputs["cluster_name"]


def test_queue_policy_lets_eventbridge_send_and_denies_plain_http(stack):
    policy = stack.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruption").inputs
    assert policy["queueUrl"].endswith(f"/{ACCOUNT_ID}/{stack.outputs['cluster_name']}")
    allow, deny = json.loads(policy["policy"])["Statement"]
    assert allow["Effect"] == "Allow" and allow["Action"] == "sqs:SendMessage"
    assert allow["Principal"] == {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]}
    assert allow["Resource"] == deny["Resource"] == queue_arn(stack)
    assert deny["Effect"] == "Deny" and deny["Action"] == "sqs:*" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_five_rules_with_exact_patterns_each_targeting_the_queue(stack):
    patterns = sorted(
        (json.loads(r.inputs["eventPattern"]) for r in stack.of_type(RULE) if r.name.startswith("karpenter-")),
        key=lambda p: p["detail-type"],
    )
    assert patterns == sorted(
        [
            {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
            {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
            {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
            {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"]},
            {"source": ["aws.ec2"], "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
        ],
        key=lambda p: p["detail-type"],
    )
    for event in INTERRUPTION_EVENTS:
        rule = stack.one(RULE, f"karpenter-{event}")
        target = stack.one(TARGET, f"karpenter-{event}")
        # Auto-named rule: offline its physical name is the logical name.
        assert target.inputs["rule"] == rule.name and stack.depends_on(target, rule)
        assert target.inputs["arn"] == queue_arn(stack)
        assert stack.depends_on(target, stack.one("aws:sqs/queuePolicy:QueuePolicy", "karpenter-interruption"))


# --- Helm releases -------------------------------------------------------------------------------------------------


def test_crd_release_installs_the_crd_chart(render):
    crd = render(karpenterVersion="1.14.0").one(RELEASE, "karpenter-crd").inputs
    assert crd["name"] == "karpenter-crd"
    assert crd["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert crd["version"] == "1.14.0"
    assert crd["namespace"] == "kube-system"
    assert not crd.get("skipCrds")


def test_controller_release_skips_crds_and_sets_cluster_queue_account_and_placement(render):
    run = render(karpenterVersion="1.14.0", **{"aws:region": "eu-west-1"})
    release = run.one(RELEASE, "karpenter").inputs
    assert release["name"] == "karpenter"
    assert release["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert release["version"] == "1.14.0"
    assert release["namespace"] == "kube-system"
    assert release["skipCrds"] is True
    values = release["values"]
    assert values["settings"] == {
        "clusterName": run.outputs["cluster_name"],
        "interruptionQueue": run.one(QUEUE, "karpenter-interruption").inputs["name"],
        # Node repair always; NodeOverlay, staticCapacity, capacityBuffer only when a pool uses them (none here).
        "featureGates": {"nodeRepair": True, "nodeOverlay": False, "staticCapacity": False, "capacityBuffer": False},
    }
    assert not values["settings"]["interruptionQueue"].startswith(("https:", "arn:"))
    assert values["serviceAccount"] == {"name": "karpenter"}
    assert values["replicas"] == 2
    assert SYSTEM_NODE_SELECTOR.items() <= values["nodeSelector"].items()
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in values["controller"]["env"]
    resources = values["controller"]["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    assert "cpu" in resources["requests"]
    # The chart's own anti-affinity and spread keep replicas apart; overriding them would drop that.
    assert "affinity" not in values and "topologySpreadConstraints" not in values


def test_controller_release_waits_for_everything_it_needs(stack):
    release = stack.one(RELEASE, "karpenter")
    needs = [
        stack.one(RELEASE, "karpenter-crd"),
        stack.one("aws:eks/nodeGroup:NodeGroup", "cluster-system"),
        stack.one("aws:eks/addon:Addon", "cluster-eks-pod-identity-agent"),
        stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "karpenter-controller"),
        stack.one("aws:eks/accessEntry:AccessEntry", "karpenter-node"),
        stack.one(QUEUE, "karpenter-interruption"),
        *(stack.one(ATTACHMENT, f"karpenter-controller-{p}") for p in CONTROLLER_POLICIES),
    ]
    missing = [n.name for n in needs if not stack.depends_on(release, n)]
    assert not missing, f"karpenter release does not wait for {missing}"
    assert not stack.depends_on(stack.one(RELEASE, "karpenter-crd"), release)


def test_both_releases_belong_to_the_karpenter_component(stack):
    component = stack.one("eks-gpu-spot:index:Karpenter")
    assert stack.one(RELEASE, "karpenter").parent == component.urn
    assert stack.one(RELEASE, "karpenter-crd").parent == component.urn


# --- Spot service-linked role --------------------------------------------------------------------------------------


@pytest.mark.parametrize("create", ["true", "false"])
def test_spot_service_linked_role_only_when_asked(render, create):
    run = render(createSpotServiceLinkedRole=create)
    roles = run.of_type("aws:iam/serviceLinkedRole:ServiceLinkedRole")
    if create == "true":
        assert [r.inputs["awsServiceName"] for r in roles] == ["spot.amazonaws.com"]
        assert run.depends_on(run.one(RELEASE, "karpenter"), roles[0])
    else:
        assert roles == []


def test_controller_image_is_left_to_the_chart_which_pins_it_by_digest(render):
    # The published 1.14.1 chart writes `1.14.1@sha256:...` into its values at release time (shared/reference
    # README): overriding controller.image would only drop that digest pin.
    for version in ("1.14.1", "1.14.0"):
        release = next(r for r in render(karpenterVersion=version).of_type(RELEASE) if r.inputs["name"] == "karpenter")
        assert release.inputs["version"] == version
        assert "image" not in release.inputs["values"]["controller"]


def test_zonal_shift_is_off_and_its_policy_not_granted(stack):
    # Karpenter panics at start with enableZonalShift unless the cluster is enabled for zonal shift, which
    # pulumi-eks 4.x cannot set; so neither the setting nor its permission.
    release = next(r for r in stack.of_type(RELEASE) if r.inputs["name"] == "karpenter")
    assert "enableZonalShift" not in release.inputs["values"]["settings"]
    assert "zonalShiftConfig" not in stack.one("eks:index:Cluster").inputs
    assert not [p for p in stack.of_type(POLICY) if "zonal" in p.name]
