"""Cluster component: encryption, logs, auth mode, endpoints, system node group, add-ons, outputs."""

from __future__ import annotations

import json

from infra.cluster import ADDONS_BEFORE_NODES, CONTROL_PLANE_LOG_TYPES, NODE_POLICIES
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR

EKS = "eks:index:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ADDON = "aws:eks/addon:Addon"


def test_cluster_name_is_prefix_plus_random_suffix(render):
    run = render(clusterNamePrefix="team-a")
    suffix = run.one("random:index/randomString:RandomString").inputs
    assert suffix["length"] == 8 and suffix["special"] is False and suffix["upper"] is False
    assert run.one(EKS).inputs["name"] == "team-a-offline0"


def test_secrets_are_envelope_encrypted_with_a_rotating_kms_key(stack):
    key = stack.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert stack.one(EKS).inputs["encryptionConfigKeyArn"].startswith("arn:aws:kms:us-west-2:")
    assert key.urn in stack.one(EKS).dependencies


def test_control_plane_logs_go_to_our_log_group_with_retention(render):
    run = render(controlPlaneLogRetentionDays="90")
    group = run.one("aws:cloudwatch/logGroup:LogGroup")
    assert group.inputs["name"] == f"/aws/eks/{run.outputs['cluster_name']}/cluster"
    assert group.inputs["retentionInDays"] == 90
    assert run.one(EKS).inputs["enabledClusterLogTypes"] == list(CONTROL_PLANE_LOG_TYPES)
    assert group.urn in run.one(EKS).dependencies  # ours exists first, so EKS does not create an unmanaged one


def test_api_auth_mode_subnets_and_no_default_node_group(stack):
    eks = stack.one(EKS).inputs
    intra = sorted(r.inputs["cidrBlock"] for r in stack.of_type("aws:ec2/subnet:Subnet") if "-intra-" in r.name)
    assert eks["authenticationMode"] == "API"
    assert eks["version"] == "1.36"
    assert eks["upgradePolicy"] == {"supportType": "STANDARD"}
    assert eks["skipDefaultNodeGroup"] is True
    assert eks["bootstrapSelfManagedAddons"] is False
    assert eks["createOidcProvider"] is False
    assert len(eks["subnetIds"]) == len(intra) == 4
    assert eks["nodeSubnetIds"] == stack.outputs["private_subnet_ids"]
    assert not set(eks["subnetIds"]) & set(eks["nodeSubnetIds"])


def test_endpoint_flags_follow_config(render):
    public = render(publicAccessCidrs="203.0.113.0/24,198.51.100.0/24").one(EKS).inputs
    assert public["endpointPrivateAccess"] is True and public["endpointPublicAccess"] is True
    assert public["publicAccessCidrs"] == ["203.0.113.0/24", "198.51.100.0/24"]
    private = render(endpointPublicAccess="false").one(EKS).inputs
    assert private["endpointPrivateAccess"] is True and private["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in private


def test_system_node_group_sizes_types_and_placement(render):
    run = render(
        systemNodeInstanceTypes="m6i.large,m5.xlarge",
        systemNodeMinSize="3",
        systemNodeDesiredSize="4",
        systemNodeMaxSize="6",
    )
    group = run.one(NODE_GROUP).inputs
    assert group["instanceTypes"] == ["m6i.large", "m5.xlarge"]
    assert group["scalingConfig"] == {"minSize": 3, "desiredSize": 4, "maxSize": 6}
    assert group["subnetIds"] == run.outputs["private_subnet_ids"]
    assert group["labels"] == SYSTEM_NODE_SELECTOR
    assert group["amiType"] == "BOTTLEROCKET_x86_64"


def test_system_nodes_require_imdsv2_and_encrypt_both_bottlerocket_volumes(stack):
    template = stack.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    devices = {m["deviceName"]: m["ebs"] for m in template["blockDeviceMappings"]}
    assert set(devices) == {"/dev/xvda", "/dev/xvdb"}
    assert all(d["encrypted"] == "true" and d["volumeType"] == "gp3" for d in devices.values())
    assert stack.one(NODE_GROUP).inputs["launchTemplate"]["version"] == "1"


def test_system_node_role_trusts_ec2_and_has_the_node_policies(stack):
    role = stack.one("aws:iam/role:Role", "cluster-system-node")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    attached = {
        r.inputs["policyArn"]
        for r in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.name.startswith("cluster-system-node-")
    }
    assert attached == {f"arn:aws:iam::aws:policy/{p}" for p in NODE_POLICIES}


def test_node_group_waits_for_the_nat_route_and_node_addons(stack):
    group = stack.one(NODE_GROUP)
    assert stack.depends_on(group, stack.one("aws:ec2/route:Route", "network-private-nat"))
    for addon in ADDONS_BEFORE_NODES:
        assert stack.depends_on(group, stack.one(ADDON, f"cluster-{addon}"))


def test_five_addons_with_coredns_and_node_monitoring_after_the_node_group(stack):
    # The sixth, amazon-cloudwatch-observability, belongs to observability (tests/test_observability.py).
    addons = {r.inputs["addonName"]: r for r in stack.of_type(ADDON) if r.name.startswith("cluster-")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "eks-node-monitoring-agent"}
    assert addons["eks-node-monitoring-agent"].inputs["addonVersion"] == "v1.7.0-eksbuild.1"
    # Pinned per Kubernetes version (infra/data/eks_addons.json), never resolved at deploy time.
    assert addons["coredns"].inputs["addonVersion"] == "v1.14.3-eksbuild.3"
    assert addons["kube-proxy"].inputs["addonVersion"] == "v1.36.0-eksbuild.14"
    assert all(a.inputs["clusterName"] == stack.outputs["cluster_name"] for a in addons.values())
    group = stack.one(NODE_GROUP)
    assert stack.depends_on(addons["coredns"], group)
    assert stack.depends_on(addons["eks-node-monitoring-agent"], group)
    assert not any(stack.depends_on(addons[a], group) for a in ADDONS_BEFORE_NODES)


def test_eks_cluster_security_group_is_tagged_for_karpenter_discovery(stack):
    tag = stack.one("aws:ec2/tag:Tag").inputs
    assert tag["key"] == "karpenter.sh/discovery"
    assert tag["value"] == stack.outputs["cluster_name"]
    assert tag["resourceId"].startswith("sg-offline-")


def test_stack_outputs(stack):
    out = stack.outputs
    name = out["cluster_name"]
    assert name.startswith("eks-spot-gpu-")
    assert out["cluster_version"] == "1.36"
    assert out["region"] == "us-west-2"
    assert out["cluster_endpoint"].startswith("https://")
    assert out["configure_kubectl"] == f"aws eks update-kubeconfig --name {name} --region us-west-2"
    assert json.loads(out["kubeconfig"])["clusters"][0]["name"] == name
    assert "kubeconfig" in stack.secret_outputs and "cluster_name" not in stack.secret_outputs
    assert out["vpc_id"].startswith("vpc-offline-")
    assert len(out["private_subnet_ids"]) == 4


def test_kubernetes_provider_uses_the_cluster_kubeconfig_as_a_secret(stack):
    provider = stack.one("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]"


def test_addon_versions_are_pinned_per_kubernetes_version_and_no_invoke_resolves_them(render):
    run = render(kubernetesVersion="1.34", kubernetesSupportType="EXTENDED")  # 1.34: extended from 2026-12-02
    versions = {r.inputs["addonName"]: r.inputs["addonVersion"] for r in run.of_type(ADDON)}
    assert versions["kube-proxy"] == "v1.34.0-eksbuild.2" and versions["coredns"] == "v1.12.3-eksbuild.1"
    assert not [token for token, _ in run.invokes if "getAddonVersion" in token]


def test_an_addon_version_can_be_overridden_in_config(render):
    run = render(addonVersions='{"coredns": "v1.12.4-eksbuild.1"}')
    versions = {r.inputs["addonName"]: r.inputs["addonVersion"] for r in run.of_type(ADDON)}
    assert versions["coredns"] == "v1.12.4-eksbuild.1"
    assert versions["kube-proxy"] == "v1.36.0-eksbuild.14"
