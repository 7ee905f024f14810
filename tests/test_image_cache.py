"""Issue 12, fast image path: ECR pull-through cache, scoped node permissions, ECR interface endpoints, outputs."""

from __future__ import annotations

import json

import pytest
import yaml

from infra.config import ConfigError, parse_config
from tests.conftest import PROJECT_ROOT
from tools.offline import ACCOUNT_ID, OfflineMocks
from tools.output_folder import OutputFolder
from tools.render import main as render_main
from tools.render_files import write_stack_outputs

RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
DEFAULT_RULES = {"ecr-public": "public.ecr.aws", "k8s": "registry.k8s.io", "quay": "quay.io"}
DOCKER_HUB = '{"docker-hub": "ecr-pullthroughcache/docker-hub"}'
HOST = f"{ACCOUNT_ID}.dkr.ecr.us-west-2.amazonaws.com"


def rules(run) -> dict[str, dict]:
    return {r.inputs["ecrRepositoryPrefix"]: r.inputs for r in run.of_type(RULE)}


def node_policy(run) -> dict:
    return json.loads(run.one(POLICY, "image-cache-node").inputs["policy"])


# --- pull-through cache rules -----------------------------------------------------------------------------------


def test_default_stack_caches_the_three_registries_that_need_no_credentials(stack):
    found = rules(stack)
    assert {prefix: inputs["upstreamRegistryUrl"] for prefix, inputs in found.items()} == DEFAULT_RULES
    assert all("credentialArn" not in inputs for inputs in found.values())


def test_image_cache_false_registers_no_cache_resources(render):
    run = render(imageCache="false")
    assert not run.of_type(RULE) and not run.of_type(TEMPLATE)
    assert not [r for r in run.registrations if r.name.startswith("image-cache")]
    assert run.outputs["image_cache"] == {}


def test_docker_hub_opt_in_adds_its_rule_with_the_secret_arn(render):
    run = render(imageCacheCredentials=DOCKER_HUB)
    found = rules(run)
    assert set(found) == {*DEFAULT_RULES, "docker-hub"}
    assert found["docker-hub"]["upstreamRegistryUrl"] == "registry-1.docker.io"
    arn = found["docker-hub"]["credentialArn"]
    assert arn.startswith(f"arn:aws:secretsmanager:us-west-2:{ACCOUNT_ID}:secret:ecr-pullthroughcache/docker-hub-")
    assert ("aws:secretsmanager/getSecret:getSecret", {"name": "ecr-pullthroughcache/docker-hub"}) in [
        (token, {k: v for k, v in args.items() if k == "name"}) for token, args in run.invokes
    ]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ('{"docker-hub": "docker-hub-token"}', "imageCacheCredentials.docker-hub"),
        ('{"docker-hub": "ecr-pullthroughcache/"}', "imageCacheCredentials.docker-hub"),
        ('{"docker-hub": "ecr-pullthroughcache/bad name"}', "imageCacheCredentials.docker-hub"),
        ('{"quay": "ecr-pullthroughcache/quay"}', "imageCacheCredentials.quay"),
        ('{"gitlab": "ecr-pullthroughcache/gitlab"}', "imageCacheCredentials.gitlab"),
    ],
)
def test_bad_credentials_entry_is_one_config_error_naming_the_entry(value, key):
    with pytest.raises(ConfigError) as error:
        parse_config({"aws:region": "us-west-2", "eks-gpu-spot:imageCacheCredentials": value})
    assert error.value.keys == (key,)


def test_credentials_without_the_cache_are_a_config_error():
    with pytest.raises(ConfigError) as error:
        parse_config({"eks-gpu-spot:imageCache": "false", "eks-gpu-spot:imageCacheCredentials": DOCKER_HUB})
    assert error.value.keys == ("imageCacheCredentials",)


def test_ghcr_is_accepted():
    cfg = parse_config({"eks-gpu-spot:imageCacheCredentials": '{"ghcr": "ecr-pullthroughcache/ghcr"}'})
    assert cfg.image_cache_credentials == {"ghcr": "ecr-pullthroughcache/ghcr"}


# --- repository creation templates ------------------------------------------------------------------------------


def test_each_cache_prefix_has_a_creation_template_with_encryption_and_a_bounded_lifecycle(stack):
    templates = {r.inputs["prefix"]: r.inputs for r in stack.of_type(TEMPLATE)}
    assert set(templates) == set(DEFAULT_RULES)
    for inputs in templates.values():
        assert inputs["appliedFors"] == ["PULL_THROUGH_CACHE"]
        assert inputs["encryptionConfigurations"][0]["encryptionType"] in ("AES256", "KMS")
        assert inputs["imageTagMutability"] == "MUTABLE"  # the cache re-syncs tags from upstream
        lifecycle = json.loads(inputs["lifecyclePolicy"])
        untagged = [r for r in lifecycle["rules"] if r["selection"]["tagStatus"] == "untagged"]
        assert untagged and all(r["action"]["type"] == "expire" for r in untagged)
        assert any(r["selection"]["tagStatus"] == "any" for r in lifecycle["rules"])  # tagged images bounded too
        # ECR: a rule with tagStatus "any" must have the highest rulePriority.
        priorities = {r["selection"]["tagStatus"]: r["rulePriority"] for r in lifecycle["rules"]}
        assert priorities["any"] == max(priorities.values())


def test_opted_in_registry_gets_its_template(render):
    run = render(imageCacheCredentials=DOCKER_HUB)
    assert "docker-hub" in {r.inputs["prefix"] for r in run.of_type(TEMPLATE)}


# --- node permissions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [None, DOCKER_HUB])
def test_node_policy_is_scoped_to_exactly_the_cache_prefixes(render, credentials):
    run = render(imageCacheCredentials=credentials) if credentials else render()
    prefixes = set(rules(run))
    statements = node_policy(run)["Statement"]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"ecr:CreateRepository", "ecr:BatchImportUpstreamImage"}
    for statement in statements:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        assert isinstance(resources, list) and "*" not in resources
        expected = {f"arn:aws:ecr:us-west-2:{ACCOUNT_ID}:repository/{p}/*" for p in prefixes}
        assert set(resources) == expected


def test_node_policy_is_attached_to_both_node_roles_and_pull_only_stays(stack):
    policy_arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/image-cache-node"
    attached_to = {r.inputs["role"] for r in stack.of_type(ATTACHMENT) if r.inputs["policyArn"] == policy_arn}
    assert attached_to == {"cluster-system-node", "karpenter-node"}
    for prefix in ("cluster-system-node-", "karpenter-node-"):
        names = {r.name for r in stack.of_type(ATTACHMENT) if r.name.startswith(prefix)}
        assert f"{prefix}AmazonEC2ContainerRegistryPullOnly" in names


# --- ECR interface endpoints ------------------------------------------------------------------------------------


def test_no_ecr_interface_endpoints_by_default(stack):
    assert [r.inputs["vpcEndpointType"] for r in stack.of_type(ENDPOINT)] == ["Gateway"]  # S3 only
    assert "network-ecr-endpoints" not in {r.name for r in stack.of_type(SECURITY_GROUP)}


def test_ecr_interface_endpoints_when_enabled(render):
    run = render(ecrInterfaceEndpoints="true")
    private_subnets = run.outputs["private_subnet_ids"]
    group = run.one(SECURITY_GROUP, "network-ecr-endpoints")
    group_id, _ = OfflineMocks("us-west-2").fake_state(SECURITY_GROUP, group.name, {})  # the id the engine gave it
    assert group.inputs["ingress"] == [
        {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.0.0.0/16"]}
    ]
    interface = {
        r.inputs["serviceName"]: r.inputs for r in run.of_type(ENDPOINT) if r.inputs["vpcEndpointType"] == "Interface"
    }
    assert set(interface) == {"com.amazonaws.us-west-2.ecr.api", "com.amazonaws.us-west-2.ecr.dkr"}
    for inputs in interface.values():
        assert inputs["privateDnsEnabled"] is True
        assert inputs["subnetIds"] == private_subnets
        assert inputs["securityGroupIds"] == [group_id]


# --- outputs ----------------------------------------------------------------------------------------------------


def test_image_cache_output_maps_each_upstream_to_its_private_prefix(stack, render):
    assert stack.outputs["image_cache"] == {upstream: f"{HOST}/{p}" for p, upstream in DEFAULT_RULES.items()}
    opted_in = render(imageCacheCredentials=DOCKER_HUB).outputs["image_cache"]
    assert opted_in["registry-1.docker.io"] == f"{HOST}/docker-hub"


def test_outputs_json_masks_secrets_and_holds_the_image_cache(stack, tmp_path):
    write_stack_outputs(stack, OutputFolder(tmp_path))
    document = json.loads((tmp_path / "outputs.json").read_text())
    assert set(document) == set(stack.outputs)
    assert document["kubeconfig"] == "[secret]"
    assert document["image_cache"] == stack.outputs["image_cache"]


def test_render_writes_outputs_json(tmp_path):
    out = tmp_path / "out"
    assert render_main(["--stack", "dev", "--out", str(out)]) == 0
    document = json.loads((out / "outputs.json").read_text())
    assert document["image_cache"]["public.ecr.aws"] == f"{HOST}/ecr-public"


# --- examples ---------------------------------------------------------------------------------------------------


def example_image(name: str) -> str:
    documents = [d for d in yaml.safe_load_all((PROJECT_ROOT / "examples" / name).read_text()) if d]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["image"]


@pytest.mark.parametrize(("name", "prefix"), [("vllm-gpu.yaml", "ecr-public"), ("inflate.yaml", "k8s")])
def test_examples_pull_through_the_cache(name, prefix):
    image = example_image(name)
    assert image.startswith(f"ACCOUNT.dkr.ecr.REGION.amazonaws.com/{prefix}/"), image
    assert ":" in image.rsplit("/", 1)[-1], "pin a tag"
