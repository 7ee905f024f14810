"""Team access (infra/access.py): access entries and policy associations from clusterAdmins, clusterViewers and
clusterNamespaceAdmins; their validation; and what render says about access and a private API endpoint."""

from __future__ import annotations

import json

import pytest

from infra.access import principal_slug
from infra.config import parse_config
from tests.conftest import config_error, parse, render_here
from tools.render import summary

ENTRY = "aws:eks/accessEntry:AccessEntry"
ASSOCIATION = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
POLICY = "arn:aws:eks::aws:cluster-access-policy/"
ADMIN_1 = "arn:aws:iam::123456789012:role/PlatformAdmin"
ADMIN_2 = "arn:aws:iam::210987654321:role/ops/team/OnCall"
VIEWER = "arn:aws:iam::123456789012:user/alice"
DEV = "arn:aws:iam::123456789012:role/TeamA"


cfg, error_for = parse, config_error


def standard_entries(run) -> dict[str, object]:
    return {r.inputs["principalArn"]: r for r in run.of_type(ENTRY) if r.inputs["type"] == "STANDARD"}


@pytest.fixture(scope="module")
def team():
    from tests.conftest import render_stack

    return render_stack(clusterAdmins=json.dumps([ADMIN_1, ADMIN_2]), clusterViewers=VIEWER)


def test_two_admins_and_a_viewer_get_standard_entries_and_cluster_scoped_policies(team):
    entries = standard_entries(team)
    assert set(entries) == {ADMIN_1, ADMIN_2, VIEWER}
    associations = {r.inputs["principalArn"]: r for r in team.of_type(ASSOCIATION)}
    assert len(team.of_type(ASSOCIATION)) == 3
    expected = {
        ADMIN_1: "AmazonEKSClusterAdminPolicy",
        ADMIN_2: "AmazonEKSClusterAdminPolicy",
        VIEWER: "AmazonEKSViewPolicy",
    }
    for arn, policy in expected.items():
        association = associations[arn]
        assert association.inputs["policyArn"] == POLICY + policy  # the stack's partition (offline: aws)
        assert association.inputs["accessScope"] == {"type": "cluster"}
        assert association.inputs["clusterName"] == entries[arn].inputs["clusterName"] == team.outputs["cluster_name"]
        assert entries[arn].urn in association.dependencies  # EKS refuses an association without its entry


def test_entries_belong_to_the_access_component_and_wait_for_the_cluster(team):
    component = team.one("eks-gpu-spot:index:ClusterAccess")
    eks = team.one("eks:index:Cluster")
    for entry in standard_entries(team).values():
        assert entry.parent == component.urn
        assert team.depends_on(entry, eks)
    for association in team.of_type(ASSOCIATION):
        assert association.parent == component.urn


def test_resource_names_come_from_the_arn_not_the_list_position(render, team):
    names = {arn: r.name for arn, r in standard_entries(team).items()}
    assert names[ADMIN_1] == f"access-{principal_slug(ADMIN_1)}"
    assert names[ADMIN_1].startswith("access-platformadmin-") and names[ADMIN_2].startswith("access-oncall-")
    reordered = render(clusterAdmins=json.dumps([ADMIN_2, ADMIN_1]), clusterViewers=VIEWER)
    assert {arn: r.name for arn, r in standard_entries(reordered).items()} == names
    # Moving alice from viewer to admin keeps her entry's name; only the association changes.
    promoted = render(clusterAdmins=json.dumps([ADMIN_1, VIEWER]))
    assert standard_entries(promoted)[VIEWER].name == names[VIEWER]
    assert {r.name for r in promoted.of_type(ASSOCIATION)} >= {f"{names[VIEWER]}-admin"}
    assert principal_slug(ADMIN_1) != principal_slug(ADMIN_1.replace("123456789012", "123456789013"))


def test_namespace_admins_get_the_admin_policy_in_their_namespaces_only(render):
    run = render(
        clusterViewers=DEV,
        clusterNamespaceAdmins=json.dumps({DEV: ["team-a", "team-a-staging"], VIEWER: ["sandbox"]}),
    )
    entries = standard_entries(run)
    assert set(entries) == {DEV, VIEWER}  # a viewer who is also a namespace admin: one entry
    scoped = {
        r.inputs["principalArn"]: r.inputs for r in run.of_type(ASSOCIATION) if "AdminPolicy" in r.inputs["policyArn"]
    }
    assert scoped[DEV]["policyArn"] == POLICY + "AmazonEKSAdminPolicy"
    assert scoped[DEV]["accessScope"] == {"type": "namespace", "namespaces": ["team-a", "team-a-staging"]}
    assert scoped[VIEWER]["accessScope"] == {"type": "namespace", "namespaces": ["sandbox"]}
    dev_policies = sorted(r.inputs["policyArn"] for r in run.of_type(ASSOCIATION) if r.inputs["principalArn"] == DEV)
    assert dev_policies == [POLICY + "AmazonEKSAdminPolicy", POLICY + "AmazonEKSViewPolicy"]


def test_no_access_keys_no_standard_entries(stack):
    assert standard_entries(stack) == {} and stack.of_type(ASSOCIATION) == []
    assert len(stack.of_type("eks-gpu-spot:index:ClusterAccess")) == 1


def test_lists_accept_every_spelling_and_paths():
    assert cfg(clusterAdmins=f"{ADMIN_1},{ADMIN_2}").cluster_admins == (ADMIN_1, ADMIN_2)
    assert cfg(clusterAdmins=json.dumps([ADMIN_2])).cluster_admins == (ADMIN_2,)
    sso = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef"
    assert cfg(clusterViewers=sso).cluster_viewers == (sso,)
    china = parse_config(
        {"aws:region": "cn-north-1", "eks-gpu-spot:clusterAdmins": "arn:aws-cn:iam::123456789012:role/A"}
    )
    assert china.cluster_admins == ("arn:aws-cn:iam::123456789012:role/A",)


@pytest.mark.parametrize(
    ("key", "items", "bad_key", "words"),
    [
        ("clusterAdmins", [ADMIN_1, "arn:aws:iam:123456789012:role/Admin"], "clusterAdmins[1]", ["is not an ARN"]),
        ("clusterAdmins", ["PlatformAdmin"], "clusterAdmins[0]", ["is not an ARN", "arn:aws:iam::123456789012:role/"]),
        ("clusterViewers", ["arn:aws:iam::12345678901:user/bob"], "clusterViewers[0]", ["12 digits"]),
        ("clusterViewers", ["arn:aws:iam::1234567890ab:user/bob"], "clusterViewers[0]", ["12 digits"]),
        ("clusterAdmins", [ADMIN_1, "arn:aws:iam::123456789012:group/devs"], "clusterAdmins[1]", ["'group'", "role"]),
        ("clusterAdmins", ["arn:aws:iam::123456789012:policy/Admin"], "clusterAdmins[0]", ["only roles"]),
        ("clusterAdmins", ["arn:aws:s3:::bucket/role/x"], "clusterAdmins[0]", ["12 digits"]),
        ("clusterAdmins", ["arn:aws:eks:us-west-2:123456789012:role/x"], "clusterAdmins[0]", ["not an IAM ARN"]),
        ("clusterAdmins", ["arn:aws:iam::123456789012:role/"], "clusterAdmins[0]", ["no valid role name"]),
        ("clusterAdmins", ["arn:aws:iam::123456789012:role/a b"], "clusterAdmins[0]", ["no valid role name"]),
        ("clusterAdmins", ["arn:azure:iam::123456789012:role/A"], "clusterAdmins[0]", ["partition", "aws-cn"]),
        ("clusterViewers", ["arn:aws-cn:iam::123456789012:role/A"], "clusterViewers[0]", ["us-west-2 is in aws"]),
        ("clusterAdmins", [ADMIN_1, ADMIN_2, ADMIN_1], "clusterAdmins[2]", ["listed already, at index 0"]),
        (
            "clusterViewers",
            [VIEWER, VIEWER.replace("alice", "Alice")],
            "clusterViewers[1]",
            ["same"],
        ),
    ],
)
def test_bad_principals_name_the_key_and_index(key, items, bad_key, words):
    error = error_for(**{key: json.dumps(items)})
    assert error.keys == (bad_key,)
    for word in words:
        assert word in str(error)


def test_an_assumed_role_session_is_refused_naming_the_role_to_use():
    session = "arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com"
    error = error_for(clusterAdmins=json.dumps([ADMIN_1, session]))
    assert error.keys == ("clusterAdmins[1]",)
    message = str(error)
    assert "assumed-role session" in message
    assert "probably arn:aws:iam::123456789012:role/Admin" in message and "path" in message


def test_a_principal_is_admin_or_viewer_not_both():
    error = error_for(clusterAdmins=json.dumps([ADMIN_1, ADMIN_2]), clusterViewers=json.dumps([VIEWER, ADMIN_2]))
    assert error.keys == ("clusterViewers[1]",)
    assert "clusterAdmins[1] already" in str(error)


def test_a_cluster_admin_is_not_also_a_namespace_admin():
    error = error_for(clusterAdmins=DEV, clusterNamespaceAdmins=json.dumps({DEV: ["team-a"]}))
    assert error.keys == (f"clusterNamespaceAdmins.{DEV}",)
    assert "covers every namespace" in str(error)


@pytest.mark.parametrize(
    ("value", "bad_key", "words"),
    [
        ({DEV: []}, f"clusterNamespaceAdmins.{DEV}", ["at least one namespace"]),
        ({DEV: ["team-a", "Team_B"]}, f"clusterNamespaceAdmins.{DEV}[1]", ["not a namespace name"]),
        ({DEV: ["team-a", "team-a"]}, f"clusterNamespaceAdmins.{DEV}[1]", ["listed already"]),
        ({"arn:aws:sts::123456789012:assumed-role/TeamA/s": ["a"]}, None, ["role/TeamA"]),
        ({"TeamA": ["a"]}, "clusterNamespaceAdmins.TeamA", ["not an ARN"]),
        ([DEV], "clusterNamespaceAdmins", ["must be a mapping"]),
    ],
)
def test_bad_namespace_admins_name_the_principal(value, bad_key, words):
    error = error_for(clusterNamespaceAdmins=json.dumps(value))
    assert len(error.keys) == 1 and error.keys[0].startswith("clusterNamespaceAdmins")
    if bad_key:
        assert error.keys == (bad_key,)
    for word in words:
        assert word in str(error)


def test_render_summary_counts_entries_and_flags_only_a_private_endpoint(render, stack, team):
    public = summary(team, "dev", "us-west-2")
    assert "Access: the deployer (cluster admin) and 3 access entries (2 admin, 1 view)" in public
    assert "API endpoint: private only" not in public
    assert "Access: only the deployer (cluster admin)" in summary(stack, "dev", "us-west-2")
    private = summary(render(endpointPublicAccess="false"), "dev", "us-west-2")
    assert (
        "API endpoint: private only: Helm releases and Karpenter objects can only be applied from inside the VPC "
        "(see README, Private API endpoint)" in private
    )


def test_render_exits_2_naming_the_bad_admin(tmp_path):
    config = tmp_path / "Pulumi.bad.yaml"
    config.write_text(
        "config:\n"
        "  aws:region: us-west-2\n"
        "  eks-gpu-spot:clusterAdmins:\n"
        "    - arn:aws:sts::123456789012:assumed-role/Admin/alice\n"
    )
    out = tmp_path / "out"
    result = render_here("--config-file", str(config), "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert "clusterAdmins[0]" in result.stderr and "arn:aws:iam::123456789012:role/Admin" in result.stderr
    assert not out.exists()


def test_the_access_summary_does_not_depend_on_registration_order():
    """The engine registers resources in an order that varies from run to run; the summary must not."""
    from types import SimpleNamespace

    from tools.render import access_lines

    def association(policy: str):
        return SimpleNamespace(inputs={"policyArn": f"arn:aws:eks::aws:cluster-access-policy/{policy}"})

    entries = [SimpleNamespace(inputs={"type": "STANDARD"})] * 3
    policies = ["AmazonEKSViewPolicy", "AmazonEKSClusterAdminPolicy", "AmazonEKSClusterAdminPolicy"]
    for order in (policies, policies[::-1]):
        by_type = {
            "aws:eks/accessEntry:AccessEntry": entries,
            "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": [association(p) for p in order],
        }
        run = SimpleNamespace(of_type=lambda t, by_type=by_type: by_type.get(t, []))
        assert access_lines(run)[0] == "Access: the deployer (cluster admin) and 3 access entries (2 admin, 1 view)"
