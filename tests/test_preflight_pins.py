"""The preflight's pin checks (tools/preflight/pins.py) against recorded AWS answers: botocore's Stubber for what moto
lacks (EKS add-on versions and schemas, Bottlerocket's public SSM parameters; tests/aws_account.py) and moto itself
for the cluster security group's rules (ec2 DescribeSecurityGroupRules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.addons import addon_plan
from infra.config import parse_config
from infra.config.cluster import ADDONS
from tests.aws_account import NODE_MONITORING_SCHEMA, addon_versions
from tests.conftest import PROJECT_ROOT, render_stack
from tests.test_preflight import G6_POOL, IAM_PREFIX, POLICY, Endpoint, _client, checks
from tests.test_preflight import aws_env as aws_env  # the fixture
from tools.preflight.aws import Aws
from tools.preflight.pins import check_pins, image_parameters
from tools.preflight.report import BLOCKED, READY, UNCHECKED

NODE_MONITORING = "eks-node-monitoring-agent"
NVIDIA_136 = "/aws/service/bottlerocket/aws-k8s-1.36-nvidia/x86_64/1.64.0/image_id"
TRAINING = [
    {"name": "train", "instanceTypes": ["p5.48xlarge"], "capacityTypes": ["on-demand"], "efa": True, "zone": "usw2-az1"}
]


def config(**keys: Any) -> Any:
    raw = {"aws:region": "us-west-2"}
    raw |= {f"eks-gpu-spot:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in keys.items()}
    return parse_config(raw)


def pins(endpoint: Endpoint, **keys: Any):
    aws = Aws(endpoint.factory, sleep=lambda _: None)
    return check_pins(aws, config(**keys)), aws


# --- what the program sends is what the preflight checks -----------------------------------------------------------


@pytest.mark.parametrize("keys", [{}, {"observability": "false", "addonVersions": '{"coredns": "v1.12.4-eksbuild.1"}'}])
def test_the_addon_plan_is_what_the_program_installs(keys):
    """Every aws:eks/addon:Addon the offline program registers, with its version and configuration JSON, is one of
    the plan the preflight checks, and nothing else."""
    run = render_stack(**keys)
    installed = {
        r.inputs["addonName"]: (r.inputs["addonVersion"], r.inputs.get("configurationValues"))
        for r in run.of_type("aws:eks/addon:Addon")
    }
    planned = {
        p.name: (p.version, json.dumps(p.configuration, sort_keys=True) if p.configuration else None)
        for p in addon_plan(
            parse_config({"aws:region": "us-west-2", **{f"eks-gpu-spot:{k}": v for k, v in keys.items()}}),
            run.outputs["cluster_name"],
        )
    }
    assert installed == planned


def test_every_pinned_addon_is_one_the_preflight_asks_about_and_the_pin_files_say_so():
    """No pin in infra/data/eks_addons.json escapes the check: with observability on, the plan covers every add-on
    pinned; each pin has its own source, and both data files name the preflight as what verifies them."""
    plan = {p.name for p in addon_plan(config(), "c")}
    assert plan == set(ADDONS)
    data = json.loads((PROJECT_ROOT / "infra" / "data" / "eks_addons.json").read_text())
    assert all(data["sources"][k][addon] for k, pins in data["versions"].items() for addon in pins)
    assert "tools.preflight" in data["_verified_by"]
    versions = json.loads((PROJECT_ROOT / "infra" / "data" / "kubernetes_versions.json").read_text())
    assert "tools.preflight" in versions["bottlerocket"]["_verified_by"]


# --- add-on versions ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_every_pin_aws_has_is_ready_and_each_addon_is_asked_for_the_stacks_kubernetes_version():
    endpoint = Endpoint()
    report, _ = pins(endpoint)
    assert report.verdict == READY, report.blocking + report.skipped
    assert report.checked == {"add-on versions", "add-on configuration", "node images"}
    assert report.addons["coredns"] == "v1.14.3-eksbuild.3"
    asked = endpoint.called("describe_addon_versions")
    assert {p["addonName"] for p in asked} == set(report.addons) and {p["kubernetesVersion"] for p in asked} == {"1.36"}
    assert {p["addonName"] for p in endpoint.called("describe_addon_configuration")} == {
        NODE_MONITORING,
        "amazon-cloudwatch-observability",
    }


@pytest.mark.usefixtures("aws_env")
def test_a_version_aws_does_not_have_for_the_kubernetes_version_blocks_naming_the_pin_and_the_fix():
    """coredns v1.12.1-eksbuild.2 is a 1.33 pin: on 1.36 AWS lists only other versions."""
    endpoint = Endpoint()
    report, _ = pins(endpoint, addonVersions={"coredns": "v1.12.1-eksbuild.2"})
    assert report.verdict == BLOCKED
    [finding] = report.blocking
    assert "add-on coredns v1.12.1-eksbuild.2 (stack key addonVersions.coredns)" in finding
    assert "not offered for Kubernetes 1.36 in us-west-2: it exists for Kubernetes 1.33 only" in finding
    assert (
        "EKS's default for 1.36: `pulumi config set --path 'addonVersions[\"coredns\"]' v1.14.3-eksbuild.3`" in finding
    )
    # Asked once with the stack's version, once without to say where it exists.
    assert [
        p.get("kubernetesVersion") for p in endpoint.called("describe_addon_versions") if p["addonName"] == "coredns"
    ] == ["1.36", None]


@pytest.mark.usefixtures("aws_env")
def test_a_pin_file_version_unknown_to_aws_names_the_pin_file():
    endpoint = Endpoint()
    empty = {"addons": []}
    endpoint.answer("describe_addon_versions", addon_versions({"addonName": "vpc-cni", "kubernetesVersion": "1.36"}))
    endpoint.answer("describe_addon_versions", addon_versions({"addonName": "kube-proxy", "kubernetesVersion": "1.36"}))
    endpoint.answer(
        "describe_addon_versions",
        {
            "addons": [
                {
                    "addonName": "eks-pod-identity-agent",
                    "addonVersions": [
                        {
                            "addonVersion": "v1.3.10-eksbuild.2",
                            "compatibilities": [{"clusterVersion": "1.36", "defaultVersion": False}],
                        }
                    ],
                }
            ]
        },
    )
    endpoint.answer("describe_addon_versions", empty)  # and without the filter: nowhere
    report, _ = pins(endpoint)
    [finding] = report.blocking
    pin = "infra/data/eks_addons.json versions.1.36.eks-pod-identity-agent"
    assert finding.startswith(f"add-on eks-pod-identity-agent v1.3.10-eksbuild.3 ({pin})")
    assert "EKS does not have it for any Kubernetes version" in finding
    assert (
        "the newest for 1.36: `pulumi config set --path 'addonVersions[\"eks-pod-identity-agent\"]' v1.3.10-eksbuild.2`"
        in finding
    )


# --- add-on configuration ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_the_node_monitoring_configuration_validates_against_the_upstream_v1_7_0_schema():
    gpu_pools = [
        {"name": "a", "instanceTypes": ["g6.xlarge"]},
        {"name": "b", "gpuNames": ["l4"], "timeSlicingReplicas": 4},
    ]
    report, _ = pins(Endpoint(), gpuPools=gpu_pools)
    assert "add-on configuration" in report.checked and report.blocking == []


@pytest.mark.usefixtures("aws_env")
def test_a_schema_that_rejects_one_key_blocks_naming_the_key_and_the_function_that_sends_it():
    """The real v1.7.0 schema without `dcgmAgent` (as v1.6.x's lacked the dcgm-server keys): EKS would refuse the
    configuration (additionalProperties false) after the control plane is up."""
    schema = json.loads(NODE_MONITORING_SCHEMA)
    del schema["definitions"]["EKSNodeMonitoringAgent"]["properties"]["dcgmAgent"]
    endpoint = Endpoint()
    endpoint.recorded["describe_addon_configuration"] = lambda p: {
        **p,
        "configurationSchema": json.dumps(schema) if p["addonName"] == NODE_MONITORING else "{}",
    }
    report, _ = pins(endpoint)
    [finding] = report.blocking
    assert f"add-on {NODE_MONITORING} v1.7.0-eksbuild.1" in finding
    assert "infra/node_health.py node_monitoring_configuration" in finding
    assert "(top level): Additional properties are not allowed ('dcgmAgent' was unexpected)" in finding


@pytest.mark.usefixtures("aws_env")
def test_a_wrong_type_is_named_by_its_path():
    schema = json.loads(NODE_MONITORING_SCHEMA)
    schema["definitions"]["Tolerations"] = {"type": "array", "items": {"type": "string"}}
    endpoint = Endpoint()
    endpoint.recorded["describe_addon_configuration"] = lambda p: {**p, "configurationSchema": json.dumps(schema)}
    report, _ = pins(endpoint, observability="false", gpuPools=[{"name": "a", "instanceTypes": ["g6.xlarge"]}])
    [finding] = report.blocking
    assert "dcgmAgent.tolerations[0]: {" in finding and "is not of type 'string'" in finding


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (
            "<html><body>Service Unavailable</body></html>",
            "the schema EKS returned is not a usable JSON schema (JSONDecodeError)",
        ),
        ('{"type": 12}', "the schema EKS returned is not a usable JSON schema (SchemaError)"),
        ("", "EKS returned no configuration schema for v1.7.0-eksbuild.1"),
    ],
    ids=["html", "invalid-schema", "empty"],
)
@pytest.mark.usefixtures("aws_env")
def test_an_unreadable_schema_is_a_reason_not_a_verdict(schema, reason):
    endpoint = Endpoint()
    endpoint.recorded["describe_addon_configuration"] = lambda p: {**p, "configurationSchema": schema}
    report, _ = pins(endpoint, observability="false")
    assert report.blocking == [] and report.skipped == [f"add-on {NODE_MONITORING} configuration: {reason}"]


# --- node images -------------------------------------------------------------------------------------------------


def test_the_image_parameters_are_karpenters_for_the_alias():
    """karpenter-provider-aws v1.14.1 pkg/providers/amifamily/bottlerocket.go: aws-k8s-<k8s>[-nvidia]/<arch>/<ver>."""
    assert image_parameters(config()) == {
        "/aws/service/bottlerocket/aws-k8s-1.36/x86_64/1.64.0/image_id": ("aws-k8s-1.36", "x86_64"),
        NVIDIA_136: ("aws-k8s-1.36-nvidia", "x86_64"),
    }
    assert list(image_parameters(config(kubernetesVersion="1.33", bottlerocketVersion="1.65.0"))) == [
        "/aws/service/bottlerocket/aws-k8s-1.33/x86_64/1.65.0/image_id",
        "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/1.65.0/image_id",
    ]


@pytest.mark.usefixtures("aws_env")
def test_a_missing_ssm_parameter_blocks_with_the_newest_release_as_the_fix():
    endpoint = Endpoint()
    endpoint.recorded["get_parameters"] = lambda p: {
        "Parameters": [
            {"Name": n, "Type": "String", "Value": "1.66.0-8a2c1f4e" if n.endswith("image_version") else "ami-1"}
            for n in p["Names"]
            if n != NVIDIA_136
        ],
        "InvalidParameters": [NVIDIA_136],
    }
    report, _ = pins(endpoint)
    [finding] = report.blocking
    assert f"SSM parameter {NVIDIA_136} not found" in finding
    assert "Bottlerocket 1.64.0 (stack key bottlerocketVersion) has no aws-k8s-1.36-nvidia x86_64 image" in finding
    assert "`pulumi config set bottlerocketVersion 1.66.0`" in finding
    assert report.images[NVIDIA_136] is None


@pytest.mark.parametrize(
    ("method", "code", "status", "reason"),
    [
        ("get_parameters", "ThrottlingException", 400, "node images: GetParameters still throttled after retries"),
        ("get_parameters", "AccessDeniedException", 400, "node images: ssm:GetParameters denied"),
        (
            "describe_addon_versions",
            "ServerException",
            500,
            "add-on vpc-cni: DescribeAddonVersions: eks answered HTTP 500",
        ),
    ],
    ids=["throttled", "denied", "server-error"],
)
@pytest.mark.usefixtures("aws_env")
def test_an_unanswered_question_is_skipped_with_its_reason(method, code, status, reason):
    endpoint = Endpoint()
    for _ in range(3):  # the first try and both retries of a throttled call
        endpoint.fail(method, code, status)
    report, _ = pins(endpoint)
    assert report.blocking == [] and any(s.startswith(reason) for s in report.skipped), report.skipped
    assert report.verdict in (READY, UNCHECKED) and report.skipped


def test_an_html_answer_from_ssm_is_a_reason():
    class Html:
        def get_parameters(self, **_: Any) -> Any:
            from botocore.parsers import ResponseParserError

            raise ResponseParserError("<html>502 Bad Gateway</html>")

        def __getattr__(self, name: str) -> Any:
            return lambda **_: {"addons": []} if name == "describe_addon_versions" else {}

    report = check_pins(Aws(lambda *_: Html()), config(observability="false", gpuPools=[]))
    assert "node images: GetParameters: unreadable answer from ssm (ResponseParserError)" in report.skipped


# --- EFA security group ------------------------------------------------------------------------------------------


def cluster_group(ingress_self: bool, egress_self: bool) -> str:
    """A cluster security group in moto's default VPC with the rules asked for; moto adds the all-traffic egress to
    0.0.0.0/0 every new group has, which does not admit EFA traffic."""
    ec2 = _client("ec2", "us-west-2")
    group = ec2.create_security_group(GroupName="eks-cluster-sg-demo", Description="EKS created security group")[
        "GroupId"
    ]
    pair = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]}]
    if ingress_self:
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=pair)
    if egress_self:
        ec2.authorize_security_group_egress(GroupId=group, IpPermissions=pair)
    return group


def existing_cluster(endpoint: Endpoint, group: str, name: str = "eks-spot-gpu-a1b2c3d4") -> Endpoint:
    endpoint.answer("list_clusters", {"clusters": [name, "eks-spot-gpu-other", "someone-elses"]})
    cluster = {"name": name, "resourcesVpcConfig": {"clusterSecurityGroupId": group}}
    return endpoint.answer("describe_cluster", {"cluster": cluster})


@pytest.mark.parametrize(
    ("ingress", "egress", "missing"),
    [(True, True, None), (True, False, "outbound"), (False, False, "inbound or outbound")],
    ids=["both", "older-cluster-without-egress", "neither"],
)
@pytest.mark.usefixtures("aws_env")
def test_a_training_pool_needs_the_cluster_security_group_open_to_itself(ingress, egress, missing):
    group = cluster_group(ingress, egress)
    endpoint = existing_cluster(Endpoint(), group)
    report, _ = pins(endpoint, gpuPools=TRAINING)
    assert "EFA security group" in report.checked
    assert [p["name"] for p in endpoint.called("describe_cluster")] == ["eks-spot-gpu-a1b2c3d4"]  # the prefix's only
    if missing is None:
        assert report.blocking == []
        return
    [finding] = report.blocking
    assert f"cluster eks-spot-gpu-a1b2c3d4's security group {group} has no {missing} all-traffic rule" in finding
    assert "training pools (train)" in finding
    assert f"aws ec2 authorize-security-group-egress --group-id {group}" in finding


@pytest.mark.usefixtures("aws_env")
def test_without_a_cluster_or_a_training_pool_the_rules_are_not_asked_for():
    endpoint = Endpoint()
    report, _ = pins(endpoint, gpuPools=TRAINING)
    assert (
        endpoint.called("describe_cluster") == [] and "no cluster named eks-spot-gpu-<8 characters>" in report.notes[0]
    )
    endpoint = Endpoint()
    pins(endpoint)
    assert endpoint.called("list_clusters") == []


# --- permissions -------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_the_readonly_policy_allows_exactly_the_calls_the_preflight_makes():
    """Every call of a run with a Spot pool, compared regions, a training pool and an existing cluster, against
    policies/preflight-readonly.json (moved here from tests/test_preflight.py when the pin checks came)."""
    endpoint = (
        Endpoint()
        .default_quota("L-3819A6DF", 1000.0)
        .scores({"usw2-az1": 1})
        .scores({"usw2-az1": 1})
        .scores({"usw2-az1": 1})
        .scores({"usw2-az1": 1})
        .scores(by_region={"us-west-2": 1})
    )
    _, _, capacity = checks(endpoint, "us-west-2", ("us-east-2",), gpuPools=G6_POOL)
    _, pinned = pins(existing_cluster(Endpoint(), cluster_group(True, True)), gpuPools=TRAINING)
    made = {f"{IAM_PREFIX[service]}:{operation}" for service, operation in capacity.calls + pinned.calls}

    policy = json.loads(POLICY.read_text())
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert made == allowed
    assert all(a.split(":")[1].startswith(("Describe", "Get", "List")) for a in allowed)  # read-only
    # The Bottlerocket parameters are public ones (no account in the ARN), scoped to Bottlerocket's path, as Karpenter
    # scopes its own ssm:GetParameter to /aws/service/* (policies/karpenter-controller-resource-discovery.json).
    ssm = next(s for s in policy["Statement"] if "ssm:GetParameters" in s["Action"])
    assert ssm["Resource"] == "arn:*:ssm:*::parameter/aws/service/bottlerocket/*"
