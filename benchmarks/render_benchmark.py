"""Benchmark (a script, not a test): `render --stack dev` against the bare import of the four Pulumi SDKs.

    uv run python benchmarks/render_benchmark.py [--runs 5]

Each command runs in a fresh interpreter, `--runs` times; prints the medians and their ratio (target <= 1.5).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_IMPORT = "import pulumi_aws, pulumi_eks, pulumi_kubernetes, pulumi_random"


def timed(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        timed([sys.executable, "-m", "infra.render", "--stack", "dev", "--out", out], 1)  # warm the OS file cache
        render = timed([sys.executable, "-m", "infra.render", "--stack", "dev", "--out", out], args.runs)
    bare = timed([sys.executable, "-c", BARE_IMPORT], args.runs)
    render_median, bare_median = statistics.median(render), statistics.median(bare)
    ratio = render_median / bare_median
    print(f"bare import of the 4 SDKs: median {bare_median:.2f} s over {args.runs} runs {[round(s, 2) for s in bare]}")
    print(
        f"render --stack dev:        median {render_median:.2f} s over {args.runs} runs {[round(s, 2) for s in render]}"
    )
    print(f"ratio render / bare import: {ratio:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
