"""Benchmark (a script, not a test): `render --stack dev` against the bare import of the modules it loads.

    uv run python benchmarks/render_benchmark.py [--runs 5]

The baseline imports exactly the third-party and standard-library modules a render imports (read from
`python -X importtime` of one render), so the ratio measures this program's own work: its imports, config,
the mock engine and the files it writes. Each command runs in a fresh interpreter, `--runs` times; prints the
medians and their ratio (target <= 1.5).
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
OWN = ("infra", "tests", "__main__")


def timed(command: list[str], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def loaded_modules(render: list[str]) -> list[str]:
    """Every module one render imports, in import order, without the project's own."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *render], cwd=ROOT, check=True, capture_output=True, text=True
    )
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [n for n in names[1:] if n.split(".")[0] not in OWN]  # [0] is the header


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        render = [sys.executable, "-m", "tools.render", "--stack", "dev", "--out", out]
        modules = loaded_modules(render[1:])  # also warms the OS file cache
        render_seconds = timed(render, args.runs)
        baseline = Path(out) / "bare_import.py"
        baseline.write_text(
            "import importlib\n"
            f"for name in {modules!r}:\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception:  # a module only its parent can import\n        pass\n"
            "import os\nos._exit(0)  # as render ends (tools/render.py exit_now): no interpreter teardown in either\n"
        )
        bare_seconds = timed([sys.executable, str(baseline)], args.runs)
    render_median, bare_median = statistics.median(render_seconds), statistics.median(bare_seconds)
    ratio = render_median / bare_median
    print(
        f"bare import of the {len(modules)} modules render loads: median {bare_median:.2f} s over {args.runs} runs "
        f"{[round(s, 2) for s in bare_seconds]}"
    )
    print(
        f"render --stack dev: median {render_median:.2f} s over {args.runs} runs "
        f"{[round(s, 2) for s in render_seconds]}"
    )
    print(f"ratio render / bare import: {ratio:.2f} (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
