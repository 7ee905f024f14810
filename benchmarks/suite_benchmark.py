"""Benchmark (a script, not a test): wall time of the whole test suite, as CI runs it (README's command).

    python3 benchmarks/suite_benchmark.py [--runs 3] [--command "uv run pytest"]

Each run is cold: a fresh `uv run pytest` process with the project's bytecode (`__pycache__`), pytest's cache
and Hypothesis' example database removed first, as in a fresh checkout. The venv's SDK bytecode stays, as
`uv sync --compile-bytecode` (.ci/run) leaves it. Prints every run and the median (target: under 30 s on 2 cores).
Helm chart tests run when `$HELM` or helm on PATH is available (as in CI), and skip otherwise: say which.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_DIRS = ("infra", "tests", "benchmarks")


def make_cold() -> None:
    for folder in PROJECT_DIRS:
        for cache in (ROOT / folder).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
    for cache in (".pytest_cache", ".hypothesis"):
        shutil.rmtree(ROOT / cache, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--command", default="uv run pytest", help="the test command (README's)")
    args = parser.parse_args()
    helm = os.environ.get("HELM") or shutil.which("helm")
    print(f"cores: {os.cpu_count()}; helm: {helm or 'not found (chart tests skip)'}; command: {args.command}")
    seconds = []
    for run in range(1, args.runs + 1):
        make_cold()
        start = time.perf_counter()
        result = subprocess.run(shlex.split(args.command), cwd=ROOT, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"run {run}: {seconds[-1]:.1f} s  exit {result.returncode}  {last}")
    print(f"median: {statistics.median(seconds):.1f} s over {len(seconds)} cold runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
