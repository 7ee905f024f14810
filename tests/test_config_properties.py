"""Property tests: whatever a user writes into stack config, loading either succeeds or raises one ConfigError
naming the key; `render` then exits 2 with one message and writes nothing. Nothing else escapes."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infra.config import KNOWN_KEYS, ConfigError, StackConfig, parse_config
from tools import render

VALID_EXAMPLES = {
    "clusterNamePrefix": ["gpu", "team-a"],
    "kubernetesVersion": ["1.35", "1.36"],
    "vpcCidr": ["10.0.0.0/16", "172.20.0.0/16"],
    "gpuInstanceTypes": ["p5.48xlarge", '["g6e.12xlarge","p4d.24xlarge"]'],
    "gpuCapacityTypes": ["spot", "spot,on-demand"],
    "systemNodeInstanceTypes": ["m5.large", "m6i.xlarge"],
    "systemNodeMaxSize": ["3", "10"],
    "endpointPublicAccess": ["true", "false"],
    "publicAccessCidrs": ["203.0.113.0/24"],
    "gpuLimit": ["8", "64"],
    "sociGpuChunkSize": ["unlimited", "64mb"],
}

near_miss_keys = st.sampled_from(KNOWN_KEYS).flatmap(
    lambda k: st.sampled_from([k[:-1], k + "s", k.lower(), k.upper(), k.replace("e", "3", 1), f" {k}"])
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), near_miss_keys, st.text(min_size=1, max_size=30))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)
values = st.one_of(
    st.sampled_from([v for vs in VALID_EXAMPLES.values() for v in vs]),
    st.text(max_size=60),  # unicode, control characters, empty
    st.integers().map(str),
    st.sampled_from(
        ["", " ", ",", "[]", "[", "]", "{}", "null", "true", "-1", "0", "1e3", "\u0663", "\uff11\uff16", "10.0.0.0/15"]
    ),
    json_values.map(json.dumps),
    st.lists(st.sampled_from(["p5.48xlarge", "m5.large", "x"]), min_size=50, max_size=400).map(",".join),  # huge
)
regions = st.one_of(st.just("us-west-2"), st.just("us-east-1"), st.text(max_size=15))


@st.composite
def raw_configs(draw) -> dict[str, str]:
    raw = {f"eks-gpu-spot:{draw(keys)}": draw(values) for _ in range(draw(st.integers(0, 5)))}
    if draw(st.booleans()):
        raw["aws:region"] = draw(regions)
    return raw


@settings(max_examples=400, deadline=None)
@given(raw_configs())
def test_loading_succeeds_or_raises_one_config_error_naming_each_key(raw):
    try:
        cfg = parse_config(raw)
    except ConfigError as error:
        message = str(error)
        assert error.problems
        # Project keys are named without their namespace; a typo in a namespace names the key as written.
        given_keys = {k.split(":", 1)[1] if k != "aws:region" else k for k in raw} | set(raw)
        for problem in error.problems:
            assert problem.key in message
            # Either a key the user wrote, or (for relations between keys) one of the related keys.
            # An item's key names its list or map first: clusterAdmins[1], addonVersions.coredns, gpuPools[0].name.
            named = problem.key in given_keys or re.split(r"[.\[]", problem.key)[0] in given_keys
            assert named or problem.key in (
                "systemNodeDesiredSize",
                "publicAccessCidrs",
            )
    else:
        assert isinstance(cfg, StackConfig)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_configs())
def test_render_exits_2_with_one_message_and_writes_nothing(raw):
    try:
        parse_config(raw)
        assume(False)  # a valid config would run the whole engine: covered by tests/test_render.py
    except ConfigError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        config_file = Path(folder) / "Pulumi.prop.yaml"
        config_file.write_text(yaml.safe_dump({"config": raw}, allow_unicode=True))
        out = Path(folder) / "out"
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = render.main(["--config-file", str(config_file), "--out", str(out)])
        assert code == 2
        assert stdout.getvalue() == ""
        assert stderr.getvalue().startswith("error: ") and stderr.getvalue().count("error: ") == 1
        assert "Traceback" not in stderr.getvalue()
        assert not out.exists()
