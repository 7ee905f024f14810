"""Stack files that are wrong are never rendered as if they were right (issue 32): keys outside `config:`, namespaces
that belong to no package the program uses, regions the AWS SDK does not know, YAML number traps, Karpenter versions
the program was not checked against; every problem of one run reported; and advice that names the file it read."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.catalog.kubernetes_versions import BOTTLEROCKET_NVIDIA_VARIANTS, SUPPORTED
from infra.catalog.zones import REGION_ZONE_IDS
from infra.config import ConfigError, parse_config
from tests.conftest import PROJECT_ROOT, render_here
from tools.stack_files import read_stack_file

GPU_POOLS_FILE = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def file_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError reading this stack file (and validating what it holds) raises."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        parse_config(read_stack_file(path))
    return caught.value


def refused_by_render(tmp_path: Path, text: str) -> str:
    """render exits 2 on this stack file, writes nothing, prints no traceback: its stderr."""
    path, out = write(tmp_path, text), tmp_path / "out"
    result = render_here("--config-file", str(path), "--out", str(out))
    assert result.returncode == 2, result.stdout
    assert not out.exists() and "Traceback" not in result.stderr
    return result.stderr


# --- the root -------------------------------------------------------------------------------------------------------


def test_keys_outside_config_are_an_error_naming_the_key_and_the_fix(tmp_path):
    stderr = refused_by_render(tmp_path, "aws:region: us-east-1\ngpuLimit: 8\n")
    assert "gpuLimit = 8" in stderr and "outside `config:`" in stderr and "eks-gpu-spot:gpuLimit" in stderr
    assert "aws:region = 'us-east-1'" in stderr


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("Config:\n  aws:region: us-east-1\n", "Config", "did you mean 'config'?"),
        ("config:\n  aws:region: us-east-1\nsecretsProvider: passphrase\n", "secretsProvider", "'secretsprovider'"),
        ("config:\n  aws:region: us-east-1\nstack: prod\n", "stack", "config, environment"),
    ],
)
def test_top_level_keys_pulumi_does_not_read_are_errors(tmp_path, text, key, hint):
    error = file_error(tmp_path, text)
    assert key in error.keys
    assert hint in str(error)


def test_what_pulumi_keeps_at_the_top_is_accepted_and_an_environment_is_refused_offline(tmp_path):
    text = "secretsprovider: passphrase\nencryptionsalt: v1:abc\nconfig:\n  aws:region: us-east-1\n"
    assert read_stack_file(write(tmp_path, text)) == {"aws:region": "us-east-1"}
    error = file_error(tmp_path, text + "environment:\n  - team/gpu\n")
    assert error.keys == ("environment",) and "ESC" in str(error)


# --- namespaces ------------------------------------------------------------------------------------------------------


def test_a_namespace_with_its_words_swapped_is_an_error_with_a_did_you_mean(tmp_path):
    stderr = refused_by_render(tmp_path, "config:\n  eks-spot-gpu:gpuLimit: 8\n")
    assert "eks-spot-gpu:gpuLimit" in stderr and "did you mean 'eks-gpu-spot'" in stderr


@pytest.mark.parametrize("namespace", ["awsx", "tls", "kubernetes-cert-manager", "gcp", "team"])
def test_a_namespace_of_no_package_this_program_uses_is_an_error(namespace):
    with pytest.raises(ConfigError) as caught:
        parse_config({f"{namespace}:x": "1"})
    assert caught.value.keys == (f"{namespace}:x",)
    assert "aws, kubernetes, eks, random, pulumi" in str(caught.value)


def test_a_project_key_under_another_namespace_is_pointed_home():
    with pytest.raises(ConfigError) as caught:
        parse_config({"team:gpuLimit": "8"})
    assert "did you mean 'eks-gpu-spot:gpuLimit'" in str(caught.value)


# --- regions ---------------------------------------------------------------------------------------------------------


def test_a_region_the_sdk_does_not_know_is_refused_without_advice_to_pin_zones(tmp_path):
    stderr = refused_by_render(tmp_path, "config:\n  aws:region: us-east-7\n")
    assert "aws:region = 'us-east-7'" in stderr and "partitions.json" in stderr
    assert "did you mean 'us-east-1' or 'us-east-2'" in stderr
    assert "availabilityZones" not in stderr


def test_every_region_with_zone_data_is_one_the_sdk_knows():
    from infra.catalog.regions import sdk_regions

    assert set(REGION_ZONE_IDS) <= set(sdk_regions())
    assert sdk_regions()["us-west-2"] == "aws" and sdk_regions()["cn-north-1"] == "aws-cn"


def test_a_real_region_without_zone_data_keeps_the_advice_to_pin_zones(tmp_path):
    from infra.catalog.regions import sdk_regions

    unzoned = sorted(r for r, p in sdk_regions().items() if p == "aws" and r not in REGION_ZONE_IDS)
    if not unzoned:
        pytest.skip("the installed botocore lists no aws-partition region without zone IDs in zone_ids.json")
    assert parse_config({"aws:region": unzoned[0]}).region == unzoned[0]
    stderr = refused_by_render(tmp_path, f"config:\n  aws:region: {unzoned[0]}\n")
    assert "no zone IDs known" in stderr and "availabilityZones" in stderr


# --- YAML number traps -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "advice"),
    [
        ("eks-gpu-spot:kubernetesVersion: 1.30", "kubernetesVersion", "kubernetesVersion: '1.30'"),
        ("kubernetesVersion: 1.30", "kubernetesVersion", "kubernetesVersion: '1.30'"),
        ("eks-gpu-spot:endpointPublicAccess: yes", "endpointPublicAccess", "true or false"),
        ("eks-gpu-spot:gpuLimit: 0x10", "gpuLimit", "decimal"),
        ("eks-gpu-spot:gpuLimit: 16.0", "gpuLimit", "gpuLimit: '16.0'"),
    ],
)
def test_yaml_number_traps_must_be_quoted(tmp_path, line, key, advice):
    error = file_error(tmp_path, f"config:\n  aws:region: us-east-1\n  {line}\n")
    assert error.keys == (key,), str(error)
    assert advice in str(error)


def test_a_trap_inside_a_pool_names_its_path(tmp_path):
    text = "config:\n  eks-gpu-spot:gpuPools:\n    - name: a\n      gpuNames: [l4]\n      gpuLimit: 8.5\n"
    error = file_error(tmp_path, text)
    assert "gpuPools[0].gpuLimit" in error.keys


def test_quoted_versions_and_plain_numbers_are_read_as_written(tmp_path):
    text = "config:\n  eks-gpu-spot:kubernetesVersion: '1.35'\n  eks-gpu-spot:gpuLimit: 32\n  eks-gpu-spot:x:\n"
    raw = read_stack_file(write(tmp_path, text))
    # An empty value is the empty string, as Pulumi reads it (sdk/go/common/workspace/loaders.go checkForEmptyConfig).
    assert raw == {"eks-gpu-spot:kubernetesVersion": "1.35", "eks-gpu-spot:gpuLimit": "32", "eks-gpu-spot:x": ""}


# --- Karpenter versions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.15.0", "1.13.2", "2.14.0"])
def test_a_karpenter_version_outside_the_tested_minor_is_refused_naming_what_is_tied_to_it(version):
    with pytest.raises(ConfigError) as caught:
        parse_config({"eks-gpu-spot:karpenterVersion": version})
    message = str(caught.value)
    assert caught.value.keys == ("karpenterVersion",)
    assert "1.14.x" in message and "policies/karpenter-controller-" in message and "CRD" in message


@pytest.mark.parametrize("version", ["1.14.0", "1.14.1", "1.14.9"])
def test_karpenter_patch_releases_of_the_tested_minor_are_accepted(version):
    assert parse_config({"eks-gpu-spot:karpenterVersion": version}).karpenter_version == version


# --- every problem of one run ----------------------------------------------------------------------------------------


def test_every_bad_item_of_a_list_is_reported():
    with pytest.raises(ConfigError) as caught:
        parse_config({"eks-gpu-spot:gpuCapacityTypes": '["Spot", "ondemand"]'})
    assert caught.value.keys == ("gpuCapacityTypes[0]", "gpuCapacityTypes[1]")


def test_an_efa_pool_without_zone_on_a_type_without_efa_reports_both():
    pool = {"name": "train", "instanceTypes": ["g5.xlarge"], "efa": True}
    with pytest.raises(ConfigError) as caught:
        parse_config({"eks-gpu-spot:gpuPools": json.dumps([pool])})
    assert set(caught.value.keys) == {"gpuPools[0].zone", "gpuPools[0].efa"}


def test_file_problems_and_value_problems_are_reported_together(tmp_path):
    error = file_error(tmp_path, "config:\n  eks-gpu-spot:gpuLimit: -1\nstacks: x\n")
    assert set(error.keys) == {"stacks", "gpuLimit"}


# --- advice that edits the stack the file is -------------------------------------------------------------------------


def test_render_of_a_config_file_says_how_to_deploy_that_file(tmp_path):
    result = render_here("--config-file", str(GPU_POOLS_FILE), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert f"Offline render of stack 'gpu-pools' ({GPU_POOLS_FILE}, us-east-1)" in result.stdout
    [last] = [line for line in result.stdout.splitlines() if line.startswith("Next: ")]
    assert "pulumi up --stack gpu-pools`" not in last
    assert f"--config-file {GPU_POOLS_FILE}" in last and "pulumi stack init" in last


def test_preflight_advice_edits_the_file_it_read():
    from tools.preflight.__main__ import config_target

    args = type("Args", (), {"stack": None, "config_file": GPU_POOLS_FILE})()
    assert config_target(args) == f"--config-file {GPU_POOLS_FILE}"
    args.config_file = None
    assert config_target(args) == "--stack dev"


def test_preflight_compares_only_regions_the_sdk_knows():
    import argparse

    from tools.preflight.__main__ import regions_arg

    assert regions_arg("us-east-1,eu-west-1") == ["us-east-1", "eu-west-1"]
    with pytest.raises(argparse.ArgumentTypeError, match="us-east-7"):
        regions_arg("us-east-1,us-east-7")


def test_the_tested_karpenter_minor_is_the_one_of_the_reference_chart_and_the_kubernetes_ranges(reference):
    import yaml

    from infra.catalog.kubernetes_versions import KARPENTER_RANGES
    from infra.config.karpenter import KarpenterKeys

    chart = yaml.safe_load((reference / "karpenter" / "chart" / "Chart.yaml").read_text())
    minor = ".".join(chart["version"].split(".")[:2])
    assert parse_config({"eks-gpu-spot:karpenterVersion": chart["version"]}).karpenter_version == chart["version"]
    assert minor in KARPENTER_RANGES
    assert KarpenterKeys.model_fields["karpenter_version"].default.startswith(minor + ".")


# --- property: mutated stack files load only when every key was understood -------------------------------------------

FICTIONAL_REGIONS = ("us-east-7", "eu-west-9", "ap-north-4", "xx-east-1")
# Versions EKS supports (infra/data/kubernetes_versions.json) that Bottlerocket 1.64.0 builds NVIDIA variants for.
KUBERNETES = tuple(v for v in SUPPORTED if v in BOTTLEROCKET_NVIDIA_VARIANTS["1.64.0"])


@st.composite
def mutated_stack_files(draw) -> tuple[str, dict[str, str], set[str]]:
    """A valid stack file with mutations of its root, namespaces, region, versions and numbers: (its text, what a
    loaded config must hold when nothing was wrong, the keys an error must name when something was)."""
    good: dict[str, str] = {}
    bad: set[str] = set()
    region = draw(st.sampled_from(sorted(REGION_ZONE_IDS)) | st.sampled_from(FICTIONAL_REGIONS))
    entries = [("aws:region", region)]
    if region not in REGION_ZONE_IDS:
        bad.add("aws:region")
    good["region"] = region
    values = {
        "gpuLimit": draw(st.sampled_from(["16", "32", "64", "'24'", "16.0", "0x20"])),
        "karpenterVersion": draw(st.sampled_from(["1.14.0", "1.14.1", "'1.14.7'", "1.15.0", "1.13.2", "1.14"])),
        "kubernetesVersion": draw(st.sampled_from([f"'{v}'" for v in KUBERNETES] + ["1.30", "1.33", "1.36"])),
    }
    for key, text in values.items():
        namespace = draw(st.sampled_from(["eks-gpu-spot:", "eks-gpu-spot:", "", "eks-spot-gpu:", "awsx:", "team:"]))
        entries.append((f"{namespace}{key}", text))
        if namespace not in ("eks-gpu-spot:", ""):
            bad.add(f"{namespace}{key}")
            continue
        unquoted = text.strip("'")
        valid = {
            "gpuLimit": text in ("16", "32", "64", "'24'"),
            "karpenterVersion": unquoted.startswith("1.14.") and text != "1.14",
            "kubernetesVersion": text.startswith("'"),
        }[key]
        if valid:
            good[key] = unquoted
        else:
            bad.add(key)
    root = draw(st.sampled_from(["config", "config", "config", "top", "Config", "extra", "secretsprovider"]))
    lines = [f"{key}: {text}" for key, text in entries]
    if root == "top":
        text, bad = "\n".join(lines) + "\n", {key for key, _ in entries}
    elif root == "Config":
        text, bad = "Config:\n" + "".join(f"  {line}\n" for line in lines), {"Config"}
    else:
        head = {"extra": "stack: prod\n", "secretsprovider": "secretsprovider: passphrase\n"}.get(root, "")
        text = head + "config:\n" + "".join(f"  {line}\n" for line in lines)
        if root == "extra":
            bad.add("stack")
    return text, good, bad


@settings(max_examples=40, deadline=None)
@given(mutated_stack_files())
def test_a_mutated_stack_file_loads_only_when_every_key_was_understood(case):
    text, good, bad = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "Pulumi.p.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = parse_config(read_stack_file(path))  # what render and preflight run first: exit 2 on ConfigError
        except ConfigError as error:
            assert bad, f"refused a file with nothing wrong:\n{text}{error}"
            assert bad <= set(error.keys), f"{bad} not all named:\n{text}{error}"
            return
    assert not bad, f"loaded a file with {bad} wrong:\n{text}"
    assert cfg.region == good["region"]
    assert cfg.gpu_limit == int(good["gpuLimit"])
    assert cfg.karpenter_version == good["karpenterVersion"]
    assert cfg.kubernetes_version == good["kubernetesVersion"]
