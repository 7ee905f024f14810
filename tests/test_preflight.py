"""Capacity preflight (`python -m tools.preflight`) against moto, with botocore's Stubber answering what moto lacks.

moto (`mock_aws`) implements zones, instance-type offerings by zone ID (per region: us-west-2 offers p5.48xlarge in
four zones, eu-central-1 in none) and Spot price history. It has no EC2 service quotas (NoSuchResourceException)
and no Spot placement scores (NotImplementedError): tests script those, in order, with Stubber, which also checks
every scripted answer and error against the service model.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.config import parse_config
from tests.aws_account import RECORDED
from tests.conftest import PROJECT_ROOT
from tools.preflight.__main__ import main
from tools.preflight.aws import Aws, Skip
from tools.preflight.checks import run_checks
from tools.preflight.report import BLOCKED, READY, UNCHECKED, WARNINGS

POLICY = PROJECT_ROOT / "policies" / "preflight-readonly.json"
IAM_PREFIX = {
    "ec2": "ec2",
    "service-quotas": "servicequotas",
    "iam": "iam",
    "cloudwatch": "cloudwatch",
    "eks": "eks",
    "ssm": "ssm",
}
SPOT_ROLE = "AWSServiceRoleForEC2Spot"


def usage_metric(quota_class: str = "G/Spot") -> dict[str, Any]:
    """The UsageMetric GetServiceQuota returns for an EC2 vCPU quota (Service Quotas API reference)."""
    return {
        "MetricNamespace": "AWS/Usage",
        "MetricName": "ResourceCount",
        "MetricDimensions": {"Service": "EC2", "Type": "Resource", "Resource": "vCPU", "Class": quota_class},
        "MetricStatisticRecommendation": "Maximum",
    }


class Endpoint:
    """An AWS endpoint for the preflight: moto answers what it implements; operations a test scripts are answered
    in order by Stubber. Records every request (region, method, parameters)."""

    def __init__(self) -> None:
        self.scripted: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        # What moto lacks for the pin checks, answered as a recorded account (tests/aws_account.py) unless scripted.
        self.recorded: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dict(RECORDED)

    def answer(self, method: str, response: dict[str, Any]) -> Endpoint:
        self.scripted[method].append(("answer", response))
        return self

    def fail(self, method: str, code: str, status: int = 400) -> Endpoint:
        self.scripted[method].append(("fail", (code, status)))
        return self

    def quota(self, code: str, value: float) -> Endpoint:
        quota = {"ServiceCode": "ec2", "QuotaCode": code, "Value": value, "UsageMetric": usage_metric()}
        return self.answer("get_service_quota", {"Quota": quota})

    def default_quota(self, code: str, value: float) -> Endpoint:
        """No value applied in the account (NoSuchResourceException): AWS's default answers."""
        self.fail("get_service_quota", "NoSuchResourceException")
        quota = {"QuotaCode": code, "Value": value, "UsageMetric": usage_metric()}
        return self.answer("get_aws_default_service_quota", {"Quota": quota})

    def usage(self, *values: float) -> Endpoint:
        """CloudWatch's answer for the usage metric: the most recent value first (ScanBy TimestampDescending)."""
        result = {"Id": "usage", "Label": "ResourceCount", "StatusCode": "Complete", "Values": list(values)}
        return self.answer("get_metric_data", {"MetricDataResults": [result]})

    def scores(self, by_zone: dict[str, int] | None = None, by_region: dict[str, int] | None = None) -> Endpoint:
        rows = [{"AvailabilityZoneId": z, "Score": s} for z, s in (by_zone or {}).items()]
        rows += [{"Region": r, "Score": s} for r, s in (by_region or {}).items()]
        return self.answer("get_spot_placement_scores", {"SpotPlacementScores": rows})

    def factory(self, service: str, region: str) -> _Client:
        return _Client(self, _client(service, region), region)

    def called(self, method: str) -> list[dict[str, Any]]:
        return [params for _, m, params in self.requests if m == method]

    def unanswered(self) -> dict[str, int]:
        return {method: len(queue) for method, queue in self.scripted.items() if queue}


@functools.cache
def _client(service: str, region: str) -> Any:
    """One client per service and region for the whole module: a client loads its service model (0.1 s for EC2),
    and moto intercepts every client's requests while a mock is active, whenever the client was made."""
    return boto3.client(service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")


class _Client:
    def __init__(self, endpoint: Endpoint, real: Any, region: str) -> None:
        self._endpoint, self._real, self._region = endpoint, real, region

    def __getattr__(self, method: str) -> Any:
        real = getattr(self._real, method)

        def call(**params: Any) -> Any:
            self._endpoint.requests.append((self._region, method, params))
            queue = self._endpoint.scripted.get(method)
            if not queue and method in self._endpoint.recorded:
                queue = [("answer", self._endpoint.recorded[method](params))]
            if not queue:
                return real(**params)
            kind, payload = queue.pop(0)
            stubber = Stubber(self._real)
            if kind == "answer":
                stubber.add_response(method, payload, params)
            else:
                code, status = payload
                stubber.add_client_error(method, service_error_code=code, service_message=code, http_status_code=status)
            with stubber:
                return real(**params)

        return call


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch):
    """Fake credentials for moto; nothing of the developer's own AWS setup leaks in."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # 0.2 s per region backend, and no test reads AMIs
    with mock_aws():
        # An account that has used Spot has the Spot service-linked role; tests of its absence delete it.
        _client("iam", "us-east-1").create_role(
            RoleName=SPOT_ROLE, Path="/aws-service-role/spot.amazonaws.com/", AssumeRolePolicyDocument="{}"
        )
        yield


def stack_file(tmp_path: Path, region: str, **config: Any) -> Path:
    """A stack file: project keys as YAML values (lists and maps stay structured, as in Pulumi.<stack>.yaml)."""
    import yaml

    values = {"aws:region": region, **{f"eks-gpu-spot:{k}": v for k, v in config.items()}}
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": values}))
    return path


def preflight(path: Path, endpoint: Endpoint, *extra: str, capsys: pytest.CaptureFixture) -> tuple[int, dict]:
    code = main(["--config-file", str(path), "--json", *extra], factory=endpoint.factory)
    out = capsys.readouterr()
    assert out.err == ""
    return code, json.loads(out.out)


def checks(endpoint: Endpoint, region: str, compare: tuple[str, ...] = (), **config: str):
    """run_checks with a recorded sleep: (reports, sleeps, the Aws)."""
    raw = {"aws:region": region, **{f"eks-gpu-spot:{k}": v for k, v in config.items()}}
    sleeps: list[float] = []
    aws = Aws(endpoint.factory, sleep=sleeps.append)
    _, reports = run_checks(aws, parse_config(raw), list(compare))
    return reports, sleeps, aws


G6_POOL = json.dumps([{"name": "l4", "instanceTypes": ["g6.xlarge", "g6.2xlarge"], "gpuLimit": 8}])


# --- the dev stack, end to end -----------------------------------------------------------------------------------


def test_dev_stack_is_ready_with_a_quota_warning_and_reports_every_check(aws_env, capsys):
    endpoint = Endpoint().quota("L-C4BD4855", 192).scores({"usw2-az1": 7, "usw2-az2": 8, "usw2-az3": 6, "usw2-az4": 9})
    code, document = preflight(PROJECT_ROOT / "Pulumi.dev.yaml", endpoint, capsys=capsys)

    assert code == 0
    assert document["region"] == "us-west-2"
    assert document["zones"] == ["usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"]
    [pool] = document["pools"]
    assert {"name", "instance_types", "zones", "blocking", "warnings", "skipped"} <= set(pool)
    assert pool["name"] == "gpu-spot" and pool["instance_types"] == ["p5.48xlarge"]
    assert pool["verdict"] == WARNINGS and pool["blocking"] == [] and pool["skipped"] == []
    assert pool["checked"] == ["offerings", "placement scores", "quota", "spot prices", "spot service-linked role"]
    assert pool["offerings"] == {"p5.48xlarge": document["zones"]}
    # gpuLimit 16 on 8-GPU instances: 2 x 192 vCPUs; the quota (192) fits one instance, not two.
    [warning] = pool["warnings"]
    assert "L-C4BD4855" in warning and "384 vCPUs" in warning
    assert "--quota-code L-C4BD4855 --desired-value 384 --region us-west-2" in warning
    assert set(pool["spot_prices"]["p5.48xlarge"]) == set(document["zones"])
    [prices] = endpoint.called("describe_spot_price_history")  # start = end: the price in effect now
    assert prices["StartTime"] == prices["EndTime"] and prices["InstanceTypes"] == ["p5.48xlarge"]
    assert pool["placement_scores"]["zones"]["usw2-az4"] == 9
    [scores] = endpoint.called("get_spot_placement_scores")
    assert scores["TargetCapacity"] == 2 and scores["SingleAvailabilityZone"] is True
    assert scores["InstanceTypes"] == ["p5.48xlarge"] and scores["RegionNames"] == ["us-west-2"]
    assert any("fewer than 3 types low" in note for note in pool["notes"])
    assert endpoint.unanswered() == {}


def test_text_output_gives_the_verdict_per_pool(aws_env, capsys):
    endpoint = Endpoint().quota("L-C4BD4855", 384).scores({"usw2-az1": 9})
    code = main(["--stack", "dev"], factory=endpoint.factory)
    text = capsys.readouterr().out
    assert code == 0
    assert "gpu-spot: READY (spot; at most 16 GPUs; types: p5.48xlarge)" in text
    assert text.rstrip().endswith("1 pool: 1 ready; exit 0")


# --- blocked: exit 3 ----------------------------------------------------------------------------------------------


def test_a_pool_whose_only_type_is_not_offered_in_the_region_is_blocked(aws_env, capsys, tmp_path):
    path = stack_file(tmp_path, "eu-central-1", gpuInstanceTypes=["p5.48xlarge"])
    endpoint = Endpoint()
    code, document = preflight(path, endpoint, "--regions", "us-east-2", capsys=capsys)

    assert code == 3
    # The report names the stack as render does, and the file it read; its advice edits that file.
    assert document["stack"] == "test" and document["config_file"] == str(path)
    [pool] = document["pools"]
    assert pool["verdict"] == BLOCKED
    [blocking] = pool["blocking"]
    assert "none of its types (p5.48xlarge) is offered in the stack's zones of eu-central-1" in blocking
    assert (
        f"offered in us-east-2 (a stack there: `pulumi config set aws:region us-east-2 --config-file {path}`)"
        in blocking
    )
    # Nothing else is asked about a pool that can never launch.
    assert endpoint.called("get_service_quota") == endpoint.called("get_spot_placement_scores") == []


def test_a_spot_quota_of_zero_blocks_naming_the_quota_code(aws_env):
    endpoint = Endpoint().quota("L-3819A6DF", 0)
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert report.verdict == BLOCKED
    [blocking] = report.blocking
    assert "Spot vCPU quota L-3819A6DF (All G and VT Spot Instance Requests) is 0" in blocking
    assert "cannot launch spot g6.xlarge, g6.2xlarge now" in blocking
    # 8 GPUs on 1-GPU types: 8 x 8 vCPUs of g6.2xlarge.
    assert "--quota-code L-3819A6DF --desired-value 64 --region us-west-2" in blocking
    assert endpoint.called("get_service_quota") == [{"ServiceCode": "ec2", "QuotaCode": "L-3819A6DF"}]


def test_a_quota_below_one_instance_only_for_spot_is_a_warning_when_on_demand_can_launch(aws_env):
    pools = json.dumps([{"name": "l4", "instanceTypes": ["g6.xlarge"], "capacityTypes": ["spot", "on-demand"]}])
    endpoint = Endpoint().quota("L-3819A6DF", 0).quota("L-DB2E81BA", 64)
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=pools)

    assert report.blocking == []
    assert any("L-3819A6DF" in w and "the pool still launches On-Demand" in w for w in report.warnings)
    assert [q["code"] for q in report.quotas] == ["L-3819A6DF", "L-DB2E81BA"]


def test_exit_code_is_3_when_any_pool_is_blocked(aws_env, capsys, tmp_path):
    pools = [
        {"name": "h100", "instanceTypes": ["p5.48xlarge"]},
        {"name": "l4", "instanceTypes": ["g6.xlarge"]},
    ]
    path = stack_file(tmp_path, "us-west-2", gpuPools=pools)
    endpoint = Endpoint().quota("L-C4BD4855", 1000).scores({"usw2-az1": 9}).quota("L-3819A6DF", 0)
    code, document = preflight(path, endpoint, capsys=capsys)
    assert code == 3
    assert [p["verdict"] for p in document["pools"]] == [READY, BLOCKED]


# --- checks that cannot run are skipped, the others still run ----------------------------------------------------


def test_access_denied_on_quotas_is_skipped_with_the_policy_to_attach(aws_env):
    endpoint = Endpoint().fail("get_service_quota", "AccessDeniedException").scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert report.verdict == READY
    assert [s for s in report.skipped if "quota" in s] == [
        "Spot quota L-3819A6DF (All G and VT Spot Instance Requests): servicequotas:GetServiceQuota denied "
        "(AccessDeniedException); attach policies/preflight-readonly.json"
    ]
    assert {"offerings", "spot prices", "placement scores"} <= report.checked


def test_throttling_is_retried_with_backoff_then_answered(aws_env):
    endpoint = (
        Endpoint()
        .fail("get_service_quota", "ThrottlingException")
        .fail("get_service_quota", "TooManyRequestsException", 429)
        .quota("L-3819A6DF", 64)
        .scores({"usw2-az1": 8})
    )
    [report], sleeps, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert sleeps == [1.0, 2.0]
    assert len(endpoint.called("get_service_quota")) == 3
    assert report.verdict == READY and report.quotas[0]["value"] == 64


def test_throttling_that_outlasts_the_retries_is_skipped(aws_env):
    endpoint = Endpoint().scores({"usw2-az1": 8})
    for _ in range(3):
        endpoint.fail("get_service_quota", "ThrottlingException")
    [report], sleeps, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert len(sleeps) == 2
    assert any("GetServiceQuota still throttled after retries (ThrottlingException)" in s for s in report.skipped)
    assert report.verdict == READY


def test_an_api_the_endpoint_does_not_implement_is_skipped(aws_env):
    # moto raises NotImplementedError for GetSpotPlacementScores; a real endpoint answers 501 or InvalidAction.
    endpoint = Endpoint().quota("L-3819A6DF", 64).fail("describe_spot_price_history", "InvalidAction", 501)
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert "spot prices: DescribeSpotPriceHistory: not implemented by this endpoint (InvalidAction)" in report.skipped
    assert "placement scores: GetSpotPlacementScores: not implemented by this endpoint" in report.skipped
    assert report.checked == {"offerings", "quota", "spot service-linked role"} and report.verdict == READY


def test_moto_has_no_ec2_quotas_so_the_quota_check_is_skipped_after_the_default_lookup(aws_env):
    endpoint = Endpoint().scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)

    assert len(endpoint.called("get_service_quota")) == len(endpoint.called("get_aws_default_service_quota")) == 1
    [skipped] = [s for s in report.skipped if "L-3819A6DF" in s]
    assert skipped.endswith("GetAWSDefaultServiceQuota: not implemented by this endpoint")
    assert "quota" not in report.checked


def test_the_aws_default_is_used_when_no_quota_value_is_applied(aws_env):
    endpoint = Endpoint().default_quota("L-3819A6DF", 0.0).scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)
    assert report.quotas[0]["source"] == "AWS default"
    assert report.verdict == BLOCKED and "(AWS default)" in report.blocking[0]


def test_a_check_out_of_time_makes_no_request():
    ticks = iter([0.0, 100.0])
    aws = Aws(lambda *_: pytest.fail("no client may be made"), clock=lambda: next(ticks))
    with aws.check(seconds=10), pytest.raises(Skip, match=r"DescribeSpotPriceHistory: this check ran out of time"):
        aws.call("ec2", "us-west-2", "DescribeSpotPriceHistory")
    assert aws.calls == []


@pytest.mark.parametrize(
    ("environment", "reason"),
    [
        ({}, "no usable AWS credentials (Unable to locate credentials)"),
        (
            {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"},
            "cannot reach ",
        ),
    ],
    ids=["no-credentials", "no-network"],
)
def test_the_command_without_credentials_or_network_skips_everything_without_a_traceback(environment, reason):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {k: v.format(port=port) for k, v in environment.items()}
    env |= {
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--stack", "dev", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 4, done.stderr  # nothing checked is not "ready": a CI gate fails
    assert done.stderr == ""
    document = json.loads(done.stdout)
    [pool] = document["pools"]
    assert pool["verdict"] == UNCHECKED and pool["checked"] == []
    assert len(pool["skipped"]) == 6 and all(reason in s for s in pool["skipped"])
    pins = document["pins"]  # six add-ons (versions; configuration waits for them) and the node images
    assert pins["verdict"] == UNCHECKED and len(pins["skipped"]) == 7 and all(reason in s for s in pins["skipped"])
    reasons = document["not_checked"]  # each reason once, with every check it stopped
    assert all(reason in why["reason"] for why in reasons) and sum(len(why["checks"]) for why in reasons) == 13
    # no credentials: one reason; no network: one per service (ec2, service-quotas, iam, eks, ssm)
    assert len({why["reason"] for why in reasons}) == len(reasons) <= 5


def test_the_stacks_aws_profile_is_used(aws_env, capsys, tmp_path):
    path = stack_file(tmp_path, "us-west-2")
    path.write_text(path.read_text().replace("config:", "config:\n  aws:profile: gpu-team", 1))
    code = main(["--config-file", str(path), "--json"])  # boto3's own chain, no test factory
    [pool] = json.loads(capsys.readouterr().out)["pools"]
    assert code == 4
    assert "The config profile (gpu-team) could not be found" in pool["skipped"][0]


# --- the Spot market: scores and advice ----------------------------------------------------------------------------


def test_low_scores_advise_a_same_gpu_type_and_a_better_region(aws_env):
    pools = json.dumps([{"name": "l40s", "instanceTypes": ["g6e.12xlarge"], "gpuLimit": 8}])
    endpoint = (
        Endpoint()
        .quota("L-3819A6DF", 1000)
        .scores({"usw2-az1": 2, "usw2-az2": 1, "usw2-az3": 2, "usw2-az4": 1})
        .scores({"usw2-az1": 4})
        .scores({"usw2-az2": 9})
        .scores({"usw2-az3": 3})
        .scores(by_region={"us-west-2": 2, "us-east-2": 8})
    )
    [report], _, _ = checks(endpoint, "us-west-2", ("us-east-2",), gpuPools=pools)

    calls = endpoint.called("get_spot_placement_scores")
    assert len(calls) == 5 and endpoint.unanswered() == {}
    assert all(c["TargetCapacity"] == 2 for c in calls)  # 8 GPUs on 4-GPU instances
    best = calls[2]["InstanceTypes"][-1]  # the candidate that scored 9
    assert calls[2]["InstanceTypes"] == ["g6e.12xlarge", best]
    assert calls[4]["RegionNames"] == ["us-west-2", "us-east-2"] and calls[4]["SingleAvailabilityZone"] is False
    [warning] = [w for w in report.warnings if "unlikely" in w]
    assert "best zone score 2/10" in warning
    assert f"add {best}: scores 9 vs 2 (`pulumi config set --path 'gpuPools[0].instanceTypes[1]' {best}`)" in warning
    assert "us-east-2 scores higher (8 vs 2)" in warning
    assert report.verdict == WARNINGS


def test_an_attribute_selected_pool_names_the_zones_it_cannot_use(aws_env):
    # moto offers the A10G (g5) types in usw2-az1..3 only.
    pools = json.dumps([{"name": "a10g", "gpuNames": ["a10g"], "gpuCountMax": 1}])
    endpoint = Endpoint().quota("L-3819A6DF", 1000).scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=pools)

    assert report.instance_types and all(t.startswith("g5.") for t in report.instance_types)
    assert "usw2-az4" not in report.zones
    assert any(w.startswith("no type of this pool is offered in usw2-az4") for w in report.warnings)
    offered = endpoint.called("describe_instance_type_offerings")[0]
    assert offered["LocationType"] == "availability-zone-id"
    assert set(report.instance_types) <= set(offered["Filters"][0]["Values"])


# --- config errors and the IAM policy -----------------------------------------------------------------------------


def test_invalid_config_exits_2_naming_the_key_before_any_aws_call(tmp_path, capsys):
    path = stack_file(tmp_path, "us-west-2", gpuPools=[{"name": "x", "instanceTypes": ["m5.large"]}])
    code = main(["--config-file", str(path)], factory=lambda *_: pytest.fail("no AWS call on invalid config"))
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith("error: ") and "gpuPools[0].instanceTypes[0]" in out.err and "m5.large" in out.err


def test_regions_must_be_region_names(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--regions", "us-east-2,Mars"])
    assert exited.value.code == 2 and "not an AWS region name: Mars" in capsys.readouterr().err


def test_messages_name_at_most_six_types_and_count_the_rest():
    from tools.preflight.report import listed

    names = [f"g6.{n}xlarge" for n in range(1, 10)]
    assert listed(names[:6]) == ", ".join(names[:6])
    assert listed(names) == ", ".join(names[:6]) + " and 3 more"


# --- a CI can gate on it (issue 24) --------------------------------------------------------------------------------


def test_a_local_moto_server_gets_a_clean_report_and_the_unchecked_exit_code():
    """A real HTTP endpoint with real error bodies: moto's server answers what it lacks with an HTML page
    (GetAWSDefaultServiceQuota, GetSpotPlacementScores: 500; DescribeAddonVersions: 404). No traceback."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env |= {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        command = [sys.executable, "-m", "tools.preflight", "--stack", "dev"]
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    assert done.stderr == "" and "Traceback" not in done.stdout
    assert "gpu-spot: READY WITH WARNINGS" in done.stdout  # offerings and prices answered; the Spot role is missing
    assert "unreadable answer from ec2 (ResponseParserError)" in done.stdout
    assert "answered HTTP 500" in done.stdout
    assert "DescribeAddonVersions failed: 404: <!doctype html>" in done.stdout  # an HTML page, not an answer
    # moto's SSM holds no Bottlerocket parameters: to the preflight, an account without the pinned image, which
    # blocks (exit 3) whatever else could not be checked.
    assert "SSM parameter /aws/service/bottlerocket/aws-k8s-1.36-nvidia/x86_64/1.64.0/image_id not found" in done.stdout
    assert done.returncode == 3 and done.stdout.rstrip().endswith("pins blocked; 1 pool: 1 ready with warnings; exit 3")


@pytest.mark.parametrize(
    "error",
    [
        __import__("botocore.parsers", fromlist=["ResponseParserError"]).ResponseParserError("<html>500</html>"),
        KeyError("AvailabilityZones"),
        TimeoutError("read timed out"),
        RuntimeError("anything at all"),
    ],
    ids=["html-body", "missing-key", "timeout", "anything"],
)
def test_any_exception_from_a_call_becomes_a_reason(error):
    class Broken:
        def __getattr__(self, _):
            def call(**_):
                raise error

            return call

    aws = Aws(lambda *_: Broken())
    with pytest.raises(Skip, match="DescribeAvailabilityZones"):
        aws.call("ec2", "us-west-2", "DescribeAvailabilityZones")


def test_an_answer_without_its_keys_is_a_reason_not_a_traceback(aws_env):
    endpoint = Endpoint().answer("describe_availability_zones", {}).quota("L-3819A6DF", 64).scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2", gpuPools=G6_POOL)
    assert any(s.startswith("zones: unexpected answer from AWS (KeyError") for s in report.skipped)


def test_each_reason_is_said_once_per_run_and_unchecked_exits_4_unless_allowed(aws_env, capsys, tmp_path):
    two_pools = json.dumps(
        [
            {"name": "a", "instanceTypes": ["g6.xlarge"], "gpuLimit": 1},
            {"name": "b", "instanceTypes": ["g6.2xlarge"], "gpuLimit": 1},
        ]
    )
    path = stack_file(tmp_path, "us-west-2", gpuPools=json.loads(two_pools))
    denied = Endpoint().fail("get_service_quota", "AccessDeniedException").scores({"usw2-az1": 8})
    denied.scores({"usw2-az1": 8})
    code = main(["--config-file", str(path)], factory=denied.factory)
    text = capsys.readouterr().out
    assert code == 4
    assert text.count("servicequotas:GetServiceQuota denied (AccessDeniedException)") == 1
    assert "not checked: Spot quota L-3819A6DF (All G and VT Spot Instance Requests) [1]" in text
    allowed = Endpoint().fail("get_service_quota", "AccessDeniedException").scores({"usw2-az1": 8})
    allowed.scores({"usw2-az1": 8})
    assert main(["--config-file", str(path), "--allow-unchecked"], factory=allowed.factory) == 0
    assert capsys.readouterr().out.rstrip().endswith("exit 0")


def test_a_missing_spot_service_linked_role_warns_naming_the_stack_key(aws_env):
    _client("iam", "us-east-1").delete_role(RoleName=SPOT_ROLE)
    endpoint = Endpoint().quota("L-3819A6DF", 64).scores({"usw2-az1": 8})
    [report], _, aws = checks(endpoint, "us-west-2", gpuPools=G6_POOL)
    assert ("iam", "GetRole") in aws.calls
    [warning] = [w for w in report.warnings if SPOT_ROLE in w]
    assert "pulumi config set createSpotServiceLinkedRole true" in warning
    assert "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com" in warning
    created = Endpoint().quota("L-3819A6DF", 64).scores({"usw2-az1": 8})
    [report], _, _ = checks(created, "us-west-2", gpuPools=G6_POOL, createSpotServiceLinkedRole="true")
    assert not [w for w in report.warnings if SPOT_ROLE in w]
    assert any("this stack creates it" in n for n in report.notes)


def test_on_demand_pools_do_not_ask_for_the_spot_role(aws_env):
    on_demand = json.dumps([{"name": "od", "instanceTypes": ["g6.xlarge"], "capacityTypes": ["on-demand"]}])
    endpoint = Endpoint().quota("L-DB2E81BA", 64)
    _, _, aws = checks(endpoint, "us-west-2", gpuPools=on_demand)
    assert ("iam", "GetRole") not in aws.calls


def test_vcpu_headroom_is_the_quota_minus_what_runs(aws_env):
    """p5.48xlarge needs 192 vCPUs. Quota 400 with 100 in use leaves 300: one of the two nodes gpuLimit 16 takes.
    Quota 192 with 64 in use leaves 128: not even one, blocked."""
    endpoint = Endpoint().quota("L-C4BD4855", 400).usage(100.0, 20.0).scores({"usw2-az1": 8})
    [report], _, _ = checks(endpoint, "us-west-2")
    [query] = endpoint.called("get_metric_data")
    metric = query["MetricDataQueries"][0]["MetricStat"]["Metric"]
    assert metric["Namespace"] == "AWS/Usage" and metric["MetricName"] == "ResourceCount"
    assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == usage_metric()["MetricDimensions"]
    assert report.quotas[0]["in_use"] == 100.0 and report.quotas[0]["headroom"] == 300.0
    [warning] = [w for w in report.warnings if "L-C4BD4855" in w]
    assert "with 100 in use: 300 left fits 1 of the 2 p5.48xlarge nodes" in warning

    full = Endpoint().quota("L-C4BD4855", 192).usage(64.0).scores({"usw2-az1": 8})
    [report], _, _ = checks(full, "us-west-2")
    assert report.verdict == BLOCKED
    assert "with 64 in use: 128 left, below one p5.48xlarge (192 vCPUs)" in report.blocking[0]


def test_no_usage_datapoint_means_nothing_runs(aws_env):
    endpoint = Endpoint().quota("L-C4BD4855", 384).scores({"usw2-az1": 8})  # moto's CloudWatch: no datapoints
    [report], _, _ = checks(endpoint, "us-west-2")
    assert report.quotas[0]["in_use"] == 0.0 and report.verdict == READY


def test_an_efa_pool_is_checked_in_its_one_zone(aws_env):
    """A training pool launches only in gpuPools[i].zone: its types must be offered there (moto's us-west-2 data
    offers p5e.48xlarge in usw2-az3 alone)."""

    def pool(zone: str) -> str:
        return json.dumps(
            [
                {
                    "name": "train",
                    "instanceTypes": ["p5e.48xlarge"],
                    "capacityTypes": ["on-demand"],
                    "efa": True,
                    "zone": zone,
                }
            ]
        )

    [report], _, _ = checks(Endpoint(), "us-west-2", gpuPools=pool("usw2-az1"))
    assert report.verdict == BLOCKED
    assert "none of its types (p5e.48xlarge) is offered in the pool's zone usw2-az1 of us-west-2" in report.blocking[0]

    [report], _, _ = checks(Endpoint(), "us-west-2", gpuPools=pool("usw2-az3"))
    assert not [b for b in report.blocking if "offered" in b]
    assert report.offerings == {"p5e.48xlarge": ["usw2-az3"]}
