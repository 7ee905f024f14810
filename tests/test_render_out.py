"""`render --out`: render writes into a new folder or one it wrote before (its marker), replacing only what it wrote;
anything else (the checkout, a folder holding other files, a file, a symlink to one) is refused with exit 2, one line,
nothing deleted and nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, render_here

MARKER = ".eks-gpu-spot-render.json"  # README, Local commands: the file that marks a folder render wrote


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every entry under `folder` with its content (files) or link target (symlinks)."""
    entries: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            entries[name] = f"-> {path.readlink()}"
        elif path.is_file():
            entries[name] = path.read_bytes()
        else:
            entries[name] = "dir"
    return entries


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out "), lines
    for word in words:
        assert word in lines[0], lines[0]


def test_out_dot_in_a_checkout_is_refused_and_deletes_nothing(tmp_path):
    """`--out .` in a checkout once wiped the checkout, .git included: run the real command in a throw-away copy of
    the working tree (uncommitted changes included), made a git repository of its own."""
    clone = tmp_path / "checkout"
    skip = shutil.ignore_patterns(".git", ".venv", ".tools", "render-out", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(PROJECT_ROOT, clone, ignore=skip)
    subprocess.run(["git", "init", "--quiet", str(clone)], check=True, timeout=60)
    before = snapshot(clone)
    assert ".git/HEAD" in before
    result = subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", "dev", "--out", "."],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(result, "project checkout", "render-out/dev")
    assert snapshot(clone) == before


def test_a_folder_holding_other_files_is_refused_and_kept(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    (out / "kubernetes").mkdir()  # even a folder named like render's own
    (out / "kubernetes" / "notes.yaml").write_text("a: 1\n")
    before = snapshot(out)
    refused(render_here("--stack", "dev", "--out", str(out)), str(out), "not empty", MARKER, "new folder")
    assert snapshot(out) == before


@pytest.mark.parametrize("link", [False, True], ids=["file", "symlink-to-file"])
def test_a_file_or_a_symlink_to_one_is_refused_and_kept(tmp_path, link):
    target = tmp_path / "some-file"
    target.write_text("precious\n")
    out = target
    if link:
        out = tmp_path / "link"
        out.symlink_to(target)
    refused(render_here("--stack", "dev", "--out", str(out)), str(out), "not a folder")
    assert target.read_text() == "precious\n" and out.is_symlink() == link


def test_an_empty_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result = render_here("--stack", "dev", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "resources.json").is_file() and (out / MARKER).is_file()


def test_a_previous_render_is_replaced_cleanly_and_other_files_in_it_stay(tmp_path):
    """Observability on writes dashboard.json; the next render (off) must not leave that stale file behind. A file the
    user put beside render's files is not render's to delete."""
    on = tmp_path / "Pulumi.obs.yaml"
    on.write_text("config:\n  aws:region: us-west-2\n  eks-gpu-spot:observability: true\n")
    off = tmp_path / "Pulumi.plain.yaml"
    off.write_text("config:\n  aws:region: us-west-2\n  eks-gpu-spot:observability: false\n")
    out = tmp_path / "out"
    assert render_here("--config-file", str(on), "--out", str(out)).returncode == 0
    assert (out / "dashboard.json").is_file()
    (out / "review-notes.md").write_text("looks fine\n")
    stale_object = out / "kubernetes" / "nodepool-removed-pool.yaml"
    stale_object.write_text("kind: NodePool\n")  # stands for an object an earlier render wrote (listed below)
    marker = (out / MARKER).read_text()
    (out / MARKER).write_text(
        marker.replace('"files": [', '"files": [\n    "kubernetes/nodepool-removed-pool.yaml",', 1)
    )

    result = render_here("--config-file", str(off), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert not (out / "dashboard.json").exists() and not stale_object.exists()
    assert (out / "review-notes.md").read_text() == "looks fine\n"
    fresh = tmp_path / "fresh"
    assert render_here("--config-file", str(off), "--out", str(fresh)).returncode == 0
    rendered = {k: v for k, v in snapshot(out).items() if k != "review-notes.md"}
    assert rendered == snapshot(fresh)
