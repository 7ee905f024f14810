"""The files render writes into OUT (tools/output_folder.py decides whether it may): resources.json, outputs.json,
critical-path.json, dashboard.json, helm/<release>.yaml and kubernetes/<kind>-<name>.yaml, each canonical (keys
sorted) so that two renders of one stack are byte-identical."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tools.output_folder import OutputFolder

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
UNKNOWN = "[unknown]"  # an output value the offline engine cannot know


def write_outputs(run: Any, out: OutputFolder) -> None:
    """Replace what the previous render wrote into OUT (tools/output_folder.py), then write this render's files."""
    out.clear_previous()
    out.write_text("resources.json", json.dumps(resource_documents(run), indent=2) + "\n")
    write_critical_path(run, out)
    write_stack_outputs(run, out)
    write_dashboard(run, out)
    for release in run.of_type(HELM_RELEASE):
        inputs = release.inputs
        repository, chart = _split_chart(inputs.get("chart", ""), (inputs.get("repositoryOpts") or {}).get("repo"))
        document = {
            "release": inputs.get("name", release.name),
            "chart": chart,
            "repository": repository,
            "version": inputs.get("version"),
            "namespace": inputs.get("namespace"),
            "skipCrds": inputs.get("skipCrds", False),
            "values": canonical(inputs.get("values", {})),
        }
        _write_yaml(out, f"helm/{document['release']}.yaml", document)
    for obj in kubernetes_objects(run):
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]
        _write_yaml(out, f"kubernetes/{kind}-{name}.yaml", canonical(obj))


def write_dashboard(run: Any, out: OutputFolder) -> None:
    """OUT/dashboard.json: the CloudWatch dashboard body the stack would send (infra/cloudwatch/dashboard.py), for
    review; absent when observability is off."""
    for dashboard in run.of_type(DASHBOARD):
        body = json.loads(dashboard.inputs["dashboardBody"])
        out.write_text("dashboard.json", json.dumps(body, indent=2, sort_keys=True) + "\n")


def canonical(value: Any) -> Any:
    """Mappings with their keys sorted, all the way down. The engine hands inputs over as protobuf Structs, whose key
    order (and the order resources register in) differs from run to run: sorted, two renders of one stack are
    byte-identical and a diff shows only what changed. Lists keep their order (it means something)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def resource_documents(run: Any) -> list[dict[str, Any]]:
    """resources.json: every registration, ordered by URN, its dependencies sorted and its inputs canonical."""
    documents = []
    for registration in sorted(run.registrations, key=lambda r: r.urn):
        document = registration.as_json()
        document["dependencies"] = sorted(document.get("dependencies", []))
        document["inputs"] = canonical(document.get("inputs", {}))
        documents.append(document)
    return documents


def _split_chart(chart: str, repository: str | None) -> tuple[str | None, str]:
    """An OCI chart is one address (`oci://registry/path/chart`); show it as repository + chart like the others."""
    if repository is None and chart.startswith("oci://"):
        registry, _, name = chart.rpartition("/")
        return registry, name
    return repository, chart


def kubernetes_objects(run: Any) -> list[dict[str, Any]]:
    """Every Kubernetes object (not Helm releases, not providers) as the manifest that would be applied."""
    objects = []
    for r in run.registrations:
        if r.type.startswith("kubernetes:") and r.type != HELM_RELEASE and r.custom and "apiVersion" in r.inputs:
            objects.append(dict(r.inputs))
    return objects


def _write_yaml(out: OutputFolder, relative: str, document: Any) -> None:
    out.write_text(relative, yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def write_stack_outputs(run: Any, out: OutputFolder) -> None:
    """OUT/outputs.json: the stack outputs as `pulumi stack output --json` would show them; secret outputs (kubeconfig)
    as "[secret]", values unknown offline as "[unknown]". Ids, ARNs and the account are placeholders."""
    from tools.offline import SECRET

    def shown(name: str, value: Any) -> Any:
        return SECRET if name in run.secret_outputs else UNKNOWN if value is None else value

    document = {name: shown(name, value) for name, value in sorted(run.outputs.items())}
    out.write_text("outputs.json", json.dumps(document, indent=2) + "\n")


def stack_critical_path(run: Any) -> Any:
    """The estimated chain of a first `pulumi up` (tools/critical_path.py), over the registrations in URN order so that
    a tie between chains is broken the same way every run."""
    from tools.critical_path import critical_path

    return critical_path(sorted(run.registrations, key=lambda r: r.urn))


def write_critical_path(run: Any, out: OutputFolder) -> None:
    """OUT/critical-path.json: the estimated wall time of a first `pulumi up` and its chain."""
    out.write_text("critical-path.json", json.dumps(stack_critical_path(run).as_json(), indent=2) + "\n")
