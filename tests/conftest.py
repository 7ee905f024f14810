"""Shared fixtures: the offline engine (the same one `render` uses) and the upstream reference data."""

from __future__ import annotations

import functools
import gc
import io
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from infra.config import ConfigError, StackConfig, parse_config
from tools.offline import OfflineRun, run_program

# Each program run allocates a few hundred thousand short-lived objects (the SDK's tasks and outputs), and a test
# process keeps the SDKs and up to 32 runs alive: the collector's default gen-0 threshold (700) made it rescan that
# heap thousands of times per run, about a quarter of a run's time. Freeze what is imported, collect less often.
gc.freeze()
gc.set_threshold(50_000, 50, 100)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = PROJECT_ROOT.parent / "shared" / "reference"
DEFAULT_CONFIG = {"aws:region": "us-west-2"}


@functools.lru_cache(maxsize=32)
def _run(items: frozenset[tuple[str, str]]) -> OfflineRun:
    return run_program(dict(items))


def render_stack(**config: str) -> OfflineRun:
    """Run the real program offline. Keys are project keys (`gpuLimit`) or namespaced (`aws:region`); cached."""
    raw = dict(DEFAULT_CONFIG)
    raw.update({k if ":" in k else f"eks-gpu-spot:{k}": v for k, v in config.items()})
    return _run(frozenset(raw.items()))


@functools.lru_cache(maxsize=8)
def run_stack_file(path: Path, stack: str) -> OfflineRun:
    """Run the program offline on a committed stack file (cached: several modules check the same stacks)."""
    from tools.render import read_stack_file

    return run_program(read_stack_file(path), stack=stack)


def parse(**values: str) -> StackConfig:
    """Validate project keys (`gpuLimit="4"`) as `pulumi up` hands them to the program; no engine."""
    return parse_config({f"eks-gpu-spot:{k}": v for k, v in values.items()})


def config_error(**values: str) -> ConfigError:
    """The ConfigError these values raise (fails the test when they are valid)."""
    with pytest.raises(ConfigError) as caught:
        parse(**values)
    return caught.value


def render_here(*args: str) -> subprocess.CompletedProcess:
    """`python -m tools.render ARGS` run in this process, where the SDKs are imported already: the same code, files,
    output and exit code without a second interpreter's start (about 1 s). Tests of the process exit itself (no
    traceback at teardown) run the real command: tests/test_render.py run_render."""
    from tools.render import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["tools.render", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def stack() -> OfflineRun:
    """The default stack (us-west-2, all defaults)."""
    return render_stack()


@pytest.fixture
def render() -> Callable[..., OfflineRun]:
    return render_stack


@pytest.fixture
def reference() -> Path:
    """Upstream data in ../shared/reference; tests that need it skip, saying why, when it is absent."""
    if not REFERENCE.is_dir():
        pytest.skip(f"upstream reference data not found at {REFERENCE} (it sits beside the project root)")
    return REFERENCE
