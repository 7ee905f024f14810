"""What a new user meets first (issue 23): render names the stack after its file, typos in any namespace are
errors with a did-you-mean, pipes close quietly, only usable GPU names are offered, and the summary ends with what
to do next."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.catalog.gpus import GPU_NAMES, POOL_GPU_NAMES
from infra.config import ConfigError, parse_config
from infra.config.namespaces import aws_provider_keys
from tests.conftest import PROJECT_ROOT, render_here

GPU_POOLS_FILE = PROJECT_ROOT / "examples" / "stacks" / "Pulumi.gpu-pools.yaml"


def error_of(raw: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value


def test_a_config_file_renders_as_its_own_stack_into_its_own_folder(tmp_path, monkeypatch):
    result = render_here("--config-file", str(GPU_POOLS_FILE), "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "Offline render of stack 'gpu-pools'" in result.stdout
    resources = json.loads((tmp_path / "o" / "resources.json").read_text())
    assert all(r["urn"].startswith("urn:pulumi:gpu-pools::") for r in resources)
    from tools import stack_files

    args = type("Args", (), {"stack": None, "config_file": GPU_POOLS_FILE})()
    assert stack_files.stack_name(args) == "gpu-pools"
    args.stack = "staging"  # --stack overrides
    assert stack_files.stack_name(args) == "staging"
    args.stack, args.config_file = None, None
    assert stack_files.stack_name(args) == "dev"


@pytest.mark.parametrize(
    ("raw", "key", "hint"),
    [
        ({"aws:regoin": "eu-west-1"}, "aws:regoin", "did you mean 'aws:region'?"),
        ({"aws:profle": "ops"}, "aws:profle", "did you mean 'aws:profile'?"),
        ({"eks-gpu-spt:gpuLimit": "8"}, "eks-gpu-spt:gpuLimit", "did you mean 'eks-gpu-spot'"),
        ({"asw:region": "eu-west-1"}, "asw:region", "did you mean 'aws'"),
    ],
)
def test_typos_in_any_namespace_are_one_error_with_a_did_you_mean(raw, key, hint):
    error = error_of(raw)
    assert error.keys == (key,)
    assert hint in str(error)


def test_provider_keys_and_the_namespaces_of_packages_the_program_uses_stay_allowed():
    assert {"region", "profile", "assumeRoles", "defaultTags", "allowedAccountIds"} <= aws_provider_keys()
    raw = {
        "aws:region": "eu-west-1",
        "aws:profile": "ops",
        "aws:defaultTags": '{"tags": {"team": "ml"}}',
        "kubernetes:context": "ops",
        "pulumi:template": "x",
        "eks:x": "1",
        "random:x": "1",
    }
    assert parse_config(raw).region == "eu-west-1"


def test_a_pool_key_typo_gets_a_did_you_mean():
    error = error_of({"eks-gpu-spot:gpuPools": json.dumps([{"name": "a", "gpuNames": ["l4"], "gpuLimt": 8}])})
    assert error.keys == ("gpuPools[0].gpuLimt",)
    assert "did you mean 'gpuLimit'?" in str(error)


def test_names_no_pool_can_use_are_not_offered():
    assert "t4g" in GPU_NAMES and "t4g" not in POOL_GPU_NAMES
    error = error_of({"eks-gpu-spot:gpuPools": json.dumps([{"name": "a", "gpuNames": ["t4g"]}])})
    assert error.keys == ("gpuPools[0].gpuNames[0]",)
    assert "arm64" in str(error) and "usable: " in str(error)
    unknown = error_of({"eks-gpu-spot:gpuPools": json.dumps([{"name": "a", "gpuNames": ["x100"]}])})
    assert "t4g" not in str(unknown)


def test_render_ends_with_next_steps_and_flags_an_open_public_endpoint(tmp_path):
    result = render_here("--stack", "dev", "--out", str(tmp_path / "o"))
    last = result.stdout.rstrip().splitlines()[-1]
    assert last.startswith("Next: ") and "tools.preflight --stack dev" in last and "pulumi up --stack dev" in last
    assert "API endpoint: public and open to 0.0.0.0/0" in result.stdout


@pytest.mark.parametrize("command", ["tools.render", "tools.preflight"])
def test_a_closed_pipe_ends_quietly(command, tmp_path):
    """`render ... | head -1`: no BrokenPipeError traceback."""
    env = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_CONFIG_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
    args = ["--out", str(tmp_path / "o")] if command == "tools.render" else []
    process = subprocess.Popen(
        [sys.executable, "-m", command, "--stack", "dev", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout.readline()  # read one line, then go away like `head -1`
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()[-500:]


def test_readme_counts_the_add_ons_the_program_creates(stack):
    addons = stack.of_type("aws:eks/addon:Addon")
    readme = (PROJECT_ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| Cluster |")]
    assert f"{len([a for a in addons if a.name.startswith('cluster-')])} EKS add-ons" in row
    [row] = [line for line in readme.splitlines() if line.startswith("| Observability |")]
    assert all(a.inputs["addonName"] in row for a in addons if a.name.startswith("observability-"))
    assert all(a.inputs["addonName"] in readme for a in addons)
