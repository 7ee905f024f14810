"""Stack config: parsing the three list spellings, defaults, and one clear error per bad input."""

from __future__ import annotations

import pytest

from infra.config import parse_config
from tests.conftest import config_error, parse

cfg, error_for = parse, config_error


def test_defaults_match_the_original_terraform_variables():
    c = cfg()
    assert c.region == "us-west-2"
    assert c.cluster_name_prefix == "eks-spot-gpu"
    assert c.kubernetes_version == "1.36"  # not the original's 1.33: the newest EKS version
    assert c.kubernetes_support_type == "STANDARD"
    assert c.vpc_cidr == "10.0.0.0/16"
    assert c.gpu_instance_types == ("p5.48xlarge",)
    assert c.gpu_capacity_types == ("spot",)
    assert c.system_node_instance_types == ("m5.large",)
    assert (c.system_node_min_size, c.system_node_max_size, c.system_node_desired_size) == (2, 3, 2)
    assert c.endpoint_public_access is True
    assert c.public_access_cidrs == ("0.0.0.0/0",)


@pytest.mark.parametrize(
    "raw",
    [
        '["p5.48xlarge","p4d.24xlarge"]',  # pulumi config set gpuInstanceTypes '[...]'
        '["p5.48xlarge", "p4d.24xlarge"]',  # --path / structured YAML arrives as JSON
        "p5.48xlarge,p4d.24xlarge",  # comma list
        " p5.48xlarge , p4d.24xlarge ",
    ],
)
def test_lists_accept_every_spelling(raw):
    assert cfg(gpuInstanceTypes=raw).gpu_instance_types == ("p5.48xlarge", "p4d.24xlarge")


def test_config_is_immutable():
    c = cfg()
    with pytest.raises(Exception, match="frozen"):
        c.gpu_limit = 3  # type: ignore[misc]


def test_region_comes_from_the_aws_namespace_and_other_namespaces_are_ignored():
    c = parse_config({"aws:region": "us-east-1", "kubernetes:context": "x", "pulumi:tags": "{}"})
    assert c.region == "us-east-1"


def test_numbers_and_booleans_parse_from_strings():
    c = cfg(systemNodeMinSize="3", systemNodeDesiredSize="3", systemNodeMaxSize="5", endpointPublicAccess="False")
    assert (c.system_node_min_size, c.system_node_desired_size, c.system_node_max_size) == (3, 3, 5)
    assert c.endpoint_public_access is False


BAD_INPUTS = [
    # (key, value, words the message must contain)
    ("gpuInstanceType", "p5.48xlarge", ["unknown key", "did you mean 'gpuInstanceTypes'"]),
    ("gpuInstanceTypes", "[]", ["must not be empty"]),
    ("gpuInstanceTypes", "", ["must not be empty"]),
    ("gpuInstanceTypes", '["p5.48xlarge",', ["not a valid JSON list"]),
    ("availabilityZones", "use1-az1", ["pins one zone", "at least two"]),
    ("addonVersions", "coredns", ["JSON object"]),
    ("kubernetesVersion", "1.20", ["not supported", "1.36"]),
    ("clusterNamePrefix", "-bad", ["must start with a letter"]),
    ("clusterNamePrefix", "has_underscore", ["letters, digits and hyphens"]),
    ("clusterNamePrefix", "x" * 39, ["at most 38"]),
    ("vpcCidr", "10.0.0.0/33", ["not an IPv4 CIDR"]),
    ("vpcCidr", "10.0.0.1/16", ["host bits zero"]),
    ("vpcCidr", "10.0.0.0/20", ["too small", "8 AZs"]),
    ("vpcCidr", "10.0.0.0/8", ["too large"]),
    ("vpcCidr", "8.8.0.0/16", ["private range"]),
    ("systemNodeMinSize", "two", ["whole number"]),
    ("systemNodeMinSize", "1", ["between 2 and 100", "Karpenter"]),
    ("endpointPublicAccess", "yes", ["true or false"]),
    ("controlPlaneLogRetentionDays", "10", ["not a CloudWatch retention"]),
    ("karpenterVersion", "0.37.0", ["is not a 1.14.x release"]),
    ("bottlerocketVersion", "latest", ["not a version"]),
    ("bottlerocketVersion", "1.40.0", [">= 1.46.0"]),
    ("gpuConsolidateAfter", "30s", ["at least 5m"]),
    ("gpuImageCacheSnapshotId", "snapshot-1", ["EBS snapshot id"]),
    ("sociGpuChunkSize", "lots", ["byte size"]),
    ("lbControllerVersion", "3.4.0", ["3.5.0"]),
]


# Items of a list or entries of a map: the error names `key[index]` or `key.name` and that item's value.
BAD_ITEMS = [
    # (key, value, index, item, words)
    ("gpuInstanceTypes", "p5.48xlarge,p5.48xlarge", "[1]", "p5.48xlarge", ["listed already, at index 0"]),
    ("gpuInstanceTypes", "p5.48xlarge,p5.48xl", "[1]", "p5.48xl", ["not an EC2 instance type"]),
    ("gpuInstanceTypes", "m5.large", "[0]", "m5.large", ["not an NVIDIA GPU instance type", "p5"]),
    ("gpuInstanceTypes", '{"a": 1}', "[0]", '{"a": 1}', ["not an EC2 instance type"]),
    ("gpuCapacityTypes", "spot,spotty", "[1]", "spotty", ["not a capacity type", "spot, on-demand"]),
    ("gpuCapacityTypes", "spot,spot", "[1]", "spot", ["listed already"]),
    ("systemNodeInstanceTypes", "m5.huge", "[0]", "m5.huge", ["not an EC2 instance type"]),
    ("systemNodeInstanceTypes", "m5.large,m7g.large", "[1]", "m7g.large", ["arm64"]),
    ("systemNodeInstanceTypes", "g5.xlarge", "[0]", "g5.xlarge", ["GPU type"]),
    ("publicAccessCidrs", "1.2.3.4/40", "[0]", "1.2.3.4/40", ["not an IPv4 CIDR"]),
    ("publicAccessCidrs", "10.0.0.0/8,203.0.113.7/24", "[1]", "203.0.113.7/24", ["host bits zero"]),
    ("availabilityZones", "use1-az1,us-east-1a", "[1]", "us-east-1a", ["not a zone ID", "use1-az1"]),
    ("gpuInstanceTypes", '["p5.48xlarge", 2]', "[1]", 2, ["valid string"]),
    # Entries of a map: `key.name`.
    ("addonVersions", '{"corends": "v1.12.4-eksbuild.1"}', ".corends", "v1.12.4-eksbuild.1", ["coredns, eks-node"]),
    (
        "addonVersions",
        '{"coredns": "1.12.4"}',
        ".coredns",
        "1.12.4",
        ["not an EKS add-on version", "v1.12.4-eksbuild.1"],
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "index", "item", "words"), BAD_ITEMS, ids=[f"{k}={v[:20]}" for k, v, *_ in BAD_ITEMS]
)
def test_bad_list_item_names_key_index_item_and_what_is_allowed(key, value, index, item, words):
    error = error_for(**{key: value})
    assert error.keys == (f"{key}{index}",)
    message = str(error)
    assert f"{key}{index} = {item!r}" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("key", "value", "words"), BAD_INPUTS, ids=[f"{k}={v[:20]}" for k, v, _ in BAD_INPUTS])
def test_bad_input_names_key_value_and_what_is_allowed(key, value, words):
    error = error_for(**{key: value})
    assert error.keys == (key,)
    message = str(error)
    assert f"{key} = {value!r}" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        ({"systemNodeMinSize": "3", "systemNodeDesiredSize": "2"}, "systemNodeDesiredSize", ["systemNodeMinSize (3)"]),
        ({"systemNodeDesiredSize": "4"}, "systemNodeDesiredSize", ["systemNodeMaxSize (3)"]),
        ({"endpointPublicAccess": "false", "publicAccessCidrs": "203.0.113.0/24"}, "publicAccessCidrs", ["no effect"]),
        ({"publicAccessCidrs": "[]"}, "publicAccessCidrs", ["at least one CIDR"]),
    ],
)
def test_relations_between_keys(values, key, words):
    error = error_for(**values)
    assert error.keys == (key,)
    for word in words:
        assert word in str(error)


def test_public_access_off_keeps_the_untouched_default_cidrs_valid():
    # `pulumi up` injects Pulumi.yaml defaults, so the default CIDR list is present whenever access is turned off.
    assert cfg(endpointPublicAccess="false").endpoint_public_access is False
    assert cfg(endpointPublicAccess="false", publicAccessCidrs="[]").public_access_cidrs == ()


def test_every_bad_key_is_reported_in_one_error():
    error = error_for(gpuCapacityTypes="spotty", vpcCidr="nope", gpuInstanceType="x")
    assert set(error.keys) == {"gpuCapacityTypes[0]", "vpcCidr", "gpuInstanceType"}


def test_several_gpu_types_and_both_capacity_types_are_valid():
    c = cfg(
        gpuInstanceTypes="p5.48xlarge,p4d.24xlarge,g6e.12xlarge,p6-b200.48xlarge", gpuCapacityTypes="spot,on-demand"
    )
    assert len(c.gpu_instance_types) == 4
    assert c.gpu_capacity_types == ("spot", "on-demand")


def test_every_concerns_validators_survive_in_the_composed_model():
    """StackConfig inherits each concern's validators; two with one name would silently drop one."""
    from infra.config import stack

    composed = stack.StackConfig.__pydantic_decorators__.field_validators
    for section in stack.StackConfig.__bases__:
        for name, decorator in section.__pydantic_decorators__.field_validators.items():
            assert composed[name].info.fields == decorator.info.fields, (section.__name__, name)
            assert composed[name].cls_var_name == name and composed[name].func.__qualname__.startswith(
                section.__name__
            ), (section.__name__, name)
