"""Render the program's Helm releases with the real `helm template`: the manifests the cluster would receive.

    uv run python -m tools.render --stack dev --out OUT --chart-dir DIR

DIR holds chart archives named `<chart>-<version>.tgz` (as `helm pull` names them). For every release document that
render wrote to OUT/helm/<release>.yaml this runs, with no cluster and no network,

    helm template <release> DIR/<chart>-<version>.tgz --namespace <ns> --kube-version <kubernetesVersion>
        (--include-crds | --skip-crds) -f <the release's values as a temporary YAML file>

and writes the manifests to OUT/charts/<release>.yaml. `--include-crds` unless the release skips CRDs, because
`helm install` applies a chart's crds/ folder too. `--kube-version` is the stack's: both the Karpenter and the
load-balancer-controller charts branch on `.Capabilities.KubeVersion`. Values the offline engine cannot know (ids,
ARNs) are its placeholders. The load-balancer controller chart generates a fresh webhook CA on every render.

helm is `$HELM` when set, else `helm` on PATH. Every problem is one line on stderr starting with `charts:`:

- helm not found: chart rendering is skipped and render still exits 0 (an environment matter, not the program's);
- a release's archive missing from DIR: that release is skipped, the others are rendered, exit status unaffected;
- helm fails on a present archive (the chart refuses the program's values, or the archive is broken): helm's first
  error line, and render exits 1 — that is a real problem with what would be deployed.

A `--chart-dir` that is not a directory is an argument error (exit 2, nothing written).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HELM_ENV = "HELM"
HELM_TIMEOUT_SECONDS = 120
NOT_FOUND = "charts: helm not found (set $HELM or put helm on PATH); skipped chart rendering"


def existing_dir(value: str) -> Path:
    """argparse type for `--chart-dir`: an existing directory."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: no such directory")
    return path


def find_helm(env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The helm to use, else None and the one line saying why. `$HELM`, when set, is the only candidate."""
    env = os.environ if env is None else env
    explicit = env.get(HELM_ENV)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit, ""
        return None, f"charts: helm not found ($HELM={explicit} is not an executable file); skipped chart rendering"
    found = shutil.which("helm", path=env.get("PATH", os.defpath))
    return (found, "") if found else (None, NOT_FOUND)


@dataclass(frozen=True)
class Outcome:
    release: str
    error: str = ""  # one line; empty when rendered
    missing: bool = False  # the archive is not in the chart directory
    manifests: str = ""  # helm template's output


def archive_name(document: dict[str, Any]) -> str:
    return f"{document['chart']}-{document['version']}.tgz"


def template_command(
    helm: str, document: dict[str, Any], archive: Path, values_file: Path, kube_version: str | None
) -> list[str]:
    command = [helm, "template", document["release"], str(archive), "--namespace", document["namespace"] or "default"]
    if kube_version:
        command += ["--kube-version", kube_version]
    command.append("--skip-crds" if document.get("skipCrds") else "--include-crds")
    return [*command, "-f", str(values_file)]


def first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    return (errors or lines or ["no error output"])[0]


def _render_one(helm: str, document: dict[str, Any], chart_dir: Path, work: Path, kube_version: str | None) -> Outcome:
    release = document["release"]
    archive = chart_dir / archive_name(document)
    if not archive.is_file():
        return Outcome(release, f"charts: {archive.name} not found in {chart_dir}; skipped release {release}", True)
    values_file = work / f"{release}.values.yaml"
    values_file.write_text(yaml.safe_dump(document.get("values") or {}, sort_keys=False))
    command = template_command(helm, document, archive, values_file, kube_version)
    # Helm's own homes in the temporary folder: no user plugins, repositories or registry credentials take part.
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(work / "home" / kind) for kind in ("CACHE", "CONFIG", "DATA")}}
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=HELM_TIMEOUT_SECONDS, check=False
        )
    except OSError as error:
        return Outcome(release, f"charts: {release}: cannot run {helm}: {error.strerror or error}")
    except subprocess.TimeoutExpired:
        return Outcome(release, f"charts: {release}: helm template took over {HELM_TIMEOUT_SECONDS} s; stopped")
    if result.returncode != 0:
        return Outcome(release, f"charts: {release} ({archive.name}): {first_error_line(result.stderr)}")
    return Outcome(release, manifests=result.stdout)


def _write_into(out: Path) -> Callable[[str, str], Any]:
    def write(relative: str, text: str) -> None:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text)

    return write


def render_charts(
    out: Path,
    chart_dir: Path,
    kube_version: str | None = None,
    helm: str | None = None,
    write: Callable[[str, str], Any] | None = None,
) -> int:
    """Render every release in OUT/helm/ into OUT/charts/; print one line per problem. 1 if helm failed, else 0.
    `write(relative path, text)` writes a file into OUT (render's records it in its marker: tools/output_folder.py)."""
    if helm is None:
        helm, why = find_helm()
        if helm is None:
            print(why, file=sys.stderr)
            return 0
    write = write or _write_into(out)
    documents = [yaml.safe_load(path.read_text()) for path in sorted((out / "helm").glob("*.yaml"))]
    with tempfile.TemporaryDirectory(prefix="render-charts-") as tmp, ThreadPoolExecutor() as pool:
        outcomes = list(
            pool.map(lambda document: _render_one(helm, document, chart_dir, Path(tmp), kube_version), documents)
        )
    for outcome in outcomes:
        if outcome.error:
            print(outcome.error, file=sys.stderr)
        else:
            write(f"charts/{outcome.release}.yaml", outcome.manifests)
    rendered = [o.release for o in outcomes if not o.error]
    print(f"Rendered {len(rendered)} of {len(outcomes)} Helm releases with {helm} into {out}/charts/")
    return 1 if any(o.error and not o.missing for o in outcomes) else 0
