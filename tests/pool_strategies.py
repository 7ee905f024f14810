"""Hypothesis strategies for valid GPU pool sets: every kind (whole GPUs, time-slicing, MIG, EFA training pools in
one zone), selections by type list or by GPU attributes, every capacity type. Static pools (`replicas`) are not
drawn: their bound is replicas, not gpuLimit, and Karpenter never launches them for pods (tests/test_static_pools.py).
Invalid combinations are filtered out by the program's own validation."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from infra.catalog.gpus import CATALOG
from infra.config import ConfigError, parse_config

# Types a GPU pool can use: amd64 with at least one whole GPU (config validation refuses the others), as the
# catalog itself lists them.
POOL_TYPES = sorted(n for n, t in CATALOG.items() if t.arch == "amd64" and t.gpu_count >= 1)
POOL_GPU_NAMES = sorted({CATALOG[n].gpu_name for n in POOL_TYPES})
assert "t4g" not in POOL_GPU_NAMES
MIG_PROFILES = ("1", "2", "3", "4", "7", "1g.10gb", "3g.40gb")

selections = st.one_of(
    st.lists(st.sampled_from(POOL_TYPES), min_size=1, max_size=3, unique=True).map(lambda t: {"instanceTypes": t}),
    st.fixed_dictionaries(
        {"gpuNames": st.lists(st.sampled_from(POOL_GPU_NAMES), min_size=1, max_size=3, unique=True)},
        optional={"gpuCountMin": st.sampled_from([1, 2, 4]), "gpuCountMax": st.sampled_from([1, 2, 4, 8])},
    ),
)
capacity = st.sampled_from(
    [
        {"capacityTypes": ["spot"]},
        {"capacityTypes": ["spot", "on-demand"]},
        {"capacityTypes": ["on-demand"]},
        {"capacityTypes": ["reserved", "on-demand"], "capacityReservationIds": ["cr-0123456789abcdef0"]},
    ]
)
whole = selections.map(lambda s: s)
time_sliced = st.tuples(selections, st.integers(2, 8)).map(lambda p: {**p[0], "timeSlicingReplicas": p[1]})
mig = st.tuples(
    st.sampled_from([{"instanceTypes": ["p5.48xlarge"]}, {"gpuNames": ["h100"]}, {"instanceTypes": ["p5.4xlarge"]}]),
    st.sampled_from(MIG_PROFILES),
).map(lambda p: {**p[0], "migProfile": {"h100.80gb": p[1]}})


training = st.tuples(
    st.sampled_from([{"instanceTypes": ["p5.48xlarge"]}, {"instanceTypes": ["p4d.24xlarge", "p5.48xlarge"]},
                     {"gpuNames": ["h100", "h200"]}]),
    st.sampled_from(["usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"]),
).map(lambda p: {**p[0], "efa": True, "zone": p[1]})  # fmt: skip


@st.composite
def pool_dicts(draw, index: int) -> dict:
    pool = {"name": f"pool{index}", **draw(st.one_of(whole, time_sliced, mig, training)), **draw(capacity)}
    pool["gpuLimit"] = draw(st.sampled_from([8, 16, 24, 32, 64]))
    if draw(st.booleans()):
        pool["weight"] = draw(st.integers(1, 100))
    return pool


def is_valid(raw: dict[str, str]) -> bool:
    try:
        parse_config(raw)
    except ConfigError:
        return False
    return True


@st.composite
def valid_pool_sets(draw, max_pools: int = 3) -> dict[str, str]:
    """A raw stack config (as Pulumi hands it to the program) with 1 to `max_pools` valid GPU pools."""
    count = draw(st.integers(1, max_pools))
    pools = [draw(pool_dicts(i)) for i in range(count)]
    raw = {"aws:region": "us-west-2", "eks-gpu-spot:gpuPools": json.dumps(pools)}
    return draw(st.just(raw).filter(is_valid))
