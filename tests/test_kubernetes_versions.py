"""Supported versions by default: every allowed Kubernetes version is one EKS, the pinned Karpenter and the pinned
Bottlerocket release support, with add-on pins; the default is the newest; the support window is read against an
injected date: render prints it, warns in extended support and refuses a version past it; the program only warns."""

from __future__ import annotations

import json
from datetime import date

import pytest

from infra import stack as stack_module
from infra.catalog.kubernetes_versions import (
    BOTTLEROCKET_NVIDIA_VARIANTS,
    ENDED,
    EXTENDED,
    KARPENTER_RANGES,
    NEWEST,
    STANDARD,
    SUPPORTED,
    VERSIONS,
    extra_cost_per_month,
    minor,
    upgrade_problem,
)
from infra.config import ADDON_VERSIONS, ADDONS, ConfigError, StackConfig, parse_config
from tests.conftest import PROJECT_ROOT
from tools.offline import run_program
from tools.render import main as render_main

ADDON_SOURCES = json.loads((PROJECT_ROOT / "infra" / "data" / "eks_addons.json").read_text())["sources"]
DEFAULTS = StackConfig()
TODAY = date(2026, 11, 28)


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_allowed_version_has_pins_a_bottlerocket_nvidia_variant_and_karpenter_support(version):
    assert set(ADDON_VERSIONS[version]) == set(ADDONS)
    assert all(ADDON_SOURCES[version][addon] for addon in ADDONS)
    assert version in BOTTLEROCKET_NVIDIA_VARIANTS[DEFAULTS.bottlerocket_version]
    low, high = KARPENTER_RANGES[".".join(DEFAULTS.karpenter_version.split(".")[:2])]
    assert minor(low) <= minor(version) <= minor(high)
    entry = VERSIONS[version]
    assert entry.eks_release < entry.end_of_standard < entry.end_of_extended and entry.source


def test_the_default_is_the_newest_version_of_the_table_and_in_standard_support_today():
    assert DEFAULTS.kubernetes_version == NEWEST == max(VERSIONS, key=minor)
    assert VERSIONS[NEWEST].status(TODAY) == STANDARD
    assert DEFAULTS.kubernetes_support_type == "STANDARD"


@pytest.mark.parametrize(
    ("version", "today", "status"),
    [
        ("1.33", date(2026, 7, 28), STANDARD),
        ("1.33", date(2026, 7, 29), EXTENDED),  # billing starts on the day standard support ends
        ("1.33", date(2027, 7, 28), EXTENDED),
        ("1.33", date(2027, 7, 29), ENDED),
        ("1.34", date(2026, 12, 1), STANDARD),
        ("1.34", date(2026, 12, 2), EXTENDED),
    ],
)
def test_lifecycle_against_injected_dates(version, today, status):
    assert VERSIONS[version].status(today) == status


def test_extended_support_costs_about_365_dollars_more_a_month():
    assert extra_cost_per_month() == pytest.approx(365)


@pytest.mark.parametrize(
    ("running", "wanted", "problem"),
    [("1.33", "1.34", None), ("1.36", "1.36", None), ("1.33", "1.36", "one minor"), ("1.36", "1.35", "downgrade")],
)
def test_one_minor_at_a_time(running, wanted, problem):
    found = upgrade_problem(running, wanted)
    assert found is None if problem is None else problem in found


def test_a_bad_support_type_names_the_key_and_suggests():
    with pytest.raises(Exception) as error:
        parse_config({"eks-gpu-spot:kubernetesSupportType": "standard"})
    assert "kubernetesSupportType" in str(error.value) and "did you mean 'STANDARD'" in str(error.value)


# --- render and the program ----------------------------------------------------------------------------------------


def stack_file(tmp_path, version: str, support_type: str | None = None):
    path = tmp_path / f"Pulumi.v{version.replace('.', '')}.yaml"
    support = f"  eks-gpu-spot:kubernetesSupportType: {support_type}\n" if support_type else ""
    path.write_text(f"config:\n  aws:region: us-west-2\n  eks-gpu-spot:kubernetesVersion: '{version}'\n{support}")
    return path


def test_render_of_dev_creates_the_newest_version_and_prints_its_status(tmp_path, capsys):
    assert render_main(["--stack", "dev", "--out", str(tmp_path / "o")], today=TODAY) == 0
    out = capsys.readouterr().out
    assert f"Kubernetes {NEWEST}: EKS standard support until {VERSIONS[NEWEST].end_of_standard}" in out
    resources = json.loads((tmp_path / "o" / "resources.json").read_text())
    (cluster,) = [r for r in resources if r["type"] == "eks:index:Cluster"]
    assert cluster["inputs"]["version"] == NEWEST


def test_render_warns_in_extended_support_once_with_the_date_and_the_extra_cost(tmp_path, capsys):
    """A 1.33 stack in extended support (EXTENDED, as EKS's API defaults to): deploys, billed extended; render says so
    once (the program's own warning is not printed a second time)."""
    config = stack_file(tmp_path, "1.33", "EXTENDED")
    assert render_main(["--config-file", str(config), "--out", str(tmp_path / "o")], today=TODAY) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "warning: Kubernetes 1.33 is in EKS extended support since 2026-07-29" in captured.out
    assert printed.count("extended support since 2026-07-29") == 1 and printed.count("$365") == 1
    assert "kubernetesSupportType EXTENDED" in captured.out
    resources = json.loads((tmp_path / "o" / "resources.json").read_text())
    (cluster,) = [r for r in resources if r["type"] == "eks:index:Cluster"]
    assert cluster["inputs"]["upgradePolicy"] == {"supportType": "EXTENDED"}


# EKS user guide, disable-extended-support: "You cannot disable extended support once your cluster has entered it.
# You can only disable extended support for clusters on standard support." A STANDARD cluster is upgraded by EKS at
# the end of standard support (view-upgrade-policy), so a stack whose version is past it and sends STANDARD is either
# in extended support (EKS refuses the update) or names a version the cluster no longer runs.
@pytest.mark.parametrize(("version", "today"), [("1.33", TODAY), ("1.34", date(2026, 12, 2))])
def test_render_refuses_standard_for_a_version_past_standard_support_with_the_fix(tmp_path, capsys, version, today):
    config = stack_file(tmp_path, version)  # no kubernetesSupportType: the default, STANDARD
    out = tmp_path / "o"
    assert render_main(["--config-file", str(config), "--out", str(out)], today=today) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("error: ") == 1 and "Traceback" not in captured.err
    for word in ("kubernetesSupportType", "'STANDARD'", "EXTENDED", f"kubernetesVersion {version}", "$365"):
        assert word in captured.err, word
    assert not out.exists()


def test_preflight_refuses_standard_past_standard_support_before_asking_aws(tmp_path, capsys):
    from tools.preflight.__main__ import main as preflight_main

    def no_aws(service, region):
        raise AssertionError(f"preflight asked {service} in {region}")

    assert preflight_main(["--config-file", str(stack_file(tmp_path, "1.33"))], factory=no_aws, today=TODAY) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "kubernetesSupportType" in captured.err and "Traceback" not in captured.err


def test_standard_is_accepted_the_day_before_standard_support_ends_and_says_what_follows(tmp_path, capsys):
    config = stack_file(tmp_path, "1.34")
    assert render_main(["--config-file", str(config), "--out", str(tmp_path / "o")], today=date(2026, 12, 1)) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("Kubernetes 1.34"))
    assert "kubernetesSupportType STANDARD" in line and "upgrades the control plane" in line and "$365" not in line


def test_the_program_refuses_standard_past_standard_support_on_the_date_it_is_given():
    raw = {"aws:region": "us-west-2", "eks-gpu-spot:kubernetesVersion": "1.33"}
    with pytest.raises(ConfigError) as error:
        run_program(raw, today=TODAY)
    assert "kubernetesSupportType" in str(error.value) and "EXTENDED" in str(error.value)
    before = run_program(raw, today=date(2026, 7, 28))  # still in standard support: STANDARD is what it sends
    assert before.one("eks:index:Cluster").inputs["upgradePolicy"] == {"supportType": "STANDARD"}


def test_render_refuses_a_version_past_extended_support_naming_the_key(tmp_path, capsys):
    config = stack_file(tmp_path, "1.32", "EXTENDED")
    out = tmp_path / "o"
    assert render_main(["--config-file", str(config), "--out", str(out)], today=date(2027, 3, 23)) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("error: ") == 1
    assert "kubernetesVersion = '1.32'" in captured.err and "ended on 2027-03-23" in captured.err
    assert not out.exists()


def test_the_program_warns_but_still_runs_on_an_ended_version():
    """`pulumi refresh` and `pulumi destroy --run-program` run the program: it must not refuse the stack."""
    raw = {
        "aws:region": "us-west-2",
        "eks-gpu-spot:kubernetesVersion": "1.32",
        "eks-gpu-spot:kubernetesSupportType": "EXTENDED",
    }
    cfg = parse_config(raw)
    later = date(2027, 4, 1)
    assert "ended on 2027-03-23" in stack_module.version_warning(cfg, later)
    assert stack_module.version_warning(cfg, date(2026, 1, 1)) is None
    run = run_program(raw, today=later)
    assert run.one("eks:index:Cluster").inputs["version"] == "1.32"
    assert [w for w in run.warnings if "ended on 2027-03-23" in w]
