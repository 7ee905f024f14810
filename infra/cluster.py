"""Cluster: EKS control plane (KMS-encrypted secrets, logs, API auth), system node group and EKS add-ons."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from infra.addons import ADDONS_BEFORE_NODES, NODE_MONITORING_ADDON
from infra.config import StackConfig
from infra.config.system_nodes import SYSTEM_NODE_SELECTOR
from infra.network import DISCOVERY_TAG, Network
from infra.node_health import node_monitoring_configuration

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# Label of the system node group: controllers (Karpenter, LB controller) select it so that they never run on
# nodes Karpenter manages (it could otherwise consolidate away its own node).
NODE_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


def ec2_trust_policy() -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def managed_policy_arn(partition: pulumi.Input[str], policy: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy)


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: pulumi.Input[str]
    config: StackConfig
    network: Network


class Cluster(pulumi.ComponentResource):
    """The EKS cluster and everything it needs before workloads can be installed."""

    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    version: pulumi.Output[str]
    arn: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    partition: pulumi.Output[str]
    account_id: pulumi.Output[str]
    system_node_group: aws.eks.NodeGroup
    system_node_role: aws.iam.Role
    addons: dict[str, aws.eks.Addon]
    k8s_provider: k8s.Provider

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("eks-gpu-spot:index:Cluster", name, None, opts)
        cfg, network = args.config, args.network
        child = pulumi.ResourceOptions(parent=self)
        partition = aws.get_partition_output(opts=pulumi.InvokeOptions(parent=self)).partition
        self.partition = partition
        self.account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id

        key = aws.kms.Key(
            f"{name}-secrets",
            description=pulumi.Output.concat("EKS secrets envelope encryption for ", args.cluster_name),
            enable_key_rotation=True,
            deletion_window_in_days=7,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=pulumi.Output.concat("alias/eks/", args.cluster_name),
            target_key_id=key.id,
            opts=child,
        )
        # Created here (not by EKS) so that it has a retention and is deleted with the stack.
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=pulumi.Output.concat("/aws/eks/", args.cluster_name, "/cluster"),
            retention_in_days=cfg.control_plane_log_retention_days,
            opts=child,
        )

        cluster = eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=cfg.kubernetes_version,
            # STANDARD by default: never billed for extended support; refused past the end of standard support
            # (infra/catalog/kubernetes_versions.py, README Kubernetes versions).
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=cfg.kubernetes_support_type),
            authentication_mode=eks.AuthenticationMode.API,
            vpc_id=network.vpc_id,
            subnet_ids=network.intra_subnet_ids,  # control-plane ENIs
            node_subnet_ids=network.private_subnet_ids,
            endpoint_private_access=True,
            endpoint_public_access=cfg.endpoint_public_access,
            public_access_cidrs=list(cfg.public_access_cidrs) if cfg.endpoint_public_access else None,
            encryption_config_key_arn=key.arn,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            skip_default_node_group=True,
            skip_default_security_groups=True,
            create_oidc_provider=False,  # workloads use EKS Pod Identity, not IRSA
            use_default_vpc_cni=True,
            bootstrap_self_managed_addons=False,  # the managed add-ons below replace them
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        eks_cluster = cluster.eks_cluster
        self.name = eks_cluster.name
        self.endpoint = eks_cluster.endpoint
        self.version = eks_cluster.version
        self.arn = eks_cluster.arn
        self.kubeconfig = pulumi.Output.secret(cluster.kubeconfig_json)

        # Karpenter nodes join through the EKS-created cluster security group (managed node groups use it too).
        aws.ec2.Tag(
            f"{name}-cluster-sg-discovery",
            resource_id=eks_cluster.vpc_config.cluster_security_group_id,
            key=DISCOVERY_TAG,
            value=self.name,
            opts=child,
        )

        self.addons = {addon: self._addon(name, addon, cfg, depends_on=[]) for addon in ADDONS_BEFORE_NODES}
        self.system_node_group = self._system_node_group(name, cfg, network, partition)
        self.addons["coredns"] = self._addon(name, "coredns", cfg, depends_on=[self.system_node_group])
        # Sets AcceleratedHardwareReady (and kernel, storage, network conditions) on every node; Karpenter's
        # nodeRepair replaces GPU nodes it marks unhealthy. Needs no IAM (EKS user guide, node health add-on).
        # Its DCGM server must reach every GPU node, or the agent itself marks them unhealthy; its configuration is the
        # same for every stack, so no pool change rolls the DCGM server (infra/node_health.py).
        self.addons[NODE_MONITORING_ADDON] = self._addon(
            name,
            NODE_MONITORING_ADDON,
            cfg,
            depends_on=[self.system_node_group],
            configuration=node_monitoring_configuration(),
        )
        self.k8s_provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)

        self.register_outputs(
            {"name": self.name, "endpoint": self.endpoint, "version": self.version, "kubeconfig": self.kubeconfig}
        )

    def _addon(
        self,
        name: str,
        addon: str,
        cfg: StackConfig,
        depends_on: list[pulumi.Resource],
        configuration: dict | None = None,
    ) -> aws.eks.Addon:
        # Pinned (infra/data/eks_addons.json or addonVersions): resolving "most recent" on every run would upgrade
        # add-ons of a live cluster, with OVERWRITE, on an unrelated `pulumi up`.
        return aws.eks.Addon(
            f"{name}-{addon}",
            cluster_name=self.name,
            addon_name=addon,
            addon_version=cfg.addon_version(addon),
            configuration_values=json.dumps(configuration, sort_keys=True) if configuration else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _system_node_group(
        self, name: str, cfg: StackConfig, network: Network, partition: pulumi.Output[str]
    ) -> aws.eks.NodeGroup:
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-system-node", assume_role_policy=ec2_trust_policy(), opts=child)
        self.system_node_role = role  # infra/image_cache.py attaches the pull-through cache policy to it
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-system-node-{policy}",
                role=role.name,
                policy_arn=managed_policy_arn(partition, policy),
                opts=child,
            )
            for policy in NODE_POLICIES
        ]
        # IMDSv2 only, one hop: pods cannot borrow the node's credentials (controllers use Pod Identity).
        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-system-node",
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            block_device_mappings=[
                _gp3("/dev/xvda", 4),  # Bottlerocket OS volume
                _gp3("/dev/xvdb", 50),  # Bottlerocket data volume: images and logs
            ],
            update_default_version=True,
            opts=child,
        )
        return aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.name,
            version=cfg.kubernetes_version,
            node_role_arn=role.arn,
            subnet_ids=network.private_subnet_ids,
            instance_types=list(cfg.system_node_instance_types),
            ami_type="BOTTLEROCKET_x86_64",
            capacity_type="ON_DEMAND",
            scaling_config={
                "min_size": cfg.system_node_min_size,
                "max_size": cfg.system_node_max_size,
                "desired_size": cfg.system_node_desired_size,
            },
            update_config={"max_unavailable": 1},
            labels=SYSTEM_NODE_SELECTOR,
            launch_template={"id": launch_template.id, "version": launch_template.latest_version.apply(str)},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[network.nat_route, *attachments, *self.addons.values()],
            ),
        )


def _gp3(device: str, size_gib: int) -> dict:
    return {
        "device_name": device,
        "ebs": {"volume_size": size_gib, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"},
    }
