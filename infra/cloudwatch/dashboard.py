"""The per-stack CloudWatch dashboard and the interruption-queue alarm, generated from infra/data/observability.json.

Pure: stack names in, dashboard body out, so tests and `render` read exactly what `pulumi up` would send. Widgets
name a stack's own dimensions (its cluster, queue and EventBridge rules); per-node series are found with a search
expression scoped to the cluster, because node names come and go with Spot (CloudWatch user guide,
search-expression-syntax: `SEARCH('{Namespace,Dim1,...} SearchTerm', 'Statistic', period)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.cloudwatch.addon import OBSERVABILITY

DASHBOARD: dict[str, Any] = OBSERVABILITY["dashboard"]
ALARM: dict[str, Any] = OBSERVABILITY["alarm"]
DOCUMENTED_METRICS: dict[str, Any] = OBSERVABILITY["documented_metrics"]
WIDGET_WIDTH, WIDGET_HEIGHT = 12, 6


def dashboard_name(cluster_name: str) -> str:
    return f"{cluster_name}{DASHBOARD['name_suffix']}"


def console_url(region: str, name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"


def _value(placeholder: str, names: Mapping[str, Any]) -> str:
    """`cluster`, `queue` or `rule:<event>` (an INTERRUPTION_EVENTS key) -> the stack's own name."""
    kind, _, event = placeholder.partition(":")
    return names["rules"][event] if kind == "rule" else names[kind]


def _search(spec: Mapping[str, Any], cluster: str, period: int, label: str) -> dict[str, Any]:
    schema = ",".join([spec["namespace"], *spec["dimensions"]])
    query = f'{{{schema}}} MetricName="{spec["metric"]}" ClusterName="{cluster}"'
    return {"expression": f"SEARCH('{query}', '{spec['stat']}', {period})", "id": label, "label": ""}


def _metric_row(spec: Mapping[str, Any], names: Mapping[str, Any]) -> list[Any]:
    row: list[Any] = [spec["namespace"], spec["metric"]]
    for dimension, placeholder in spec["dimensions"].items():
        row += [dimension, _value(placeholder, names)]
    return [*row, {"stat": spec["stat"], "label": spec["label"]}]


def _widget(index: int, spec: Mapping[str, Any], names: Mapping[str, Any], region: str) -> dict[str, Any]:
    period = spec["period"]
    if "search" in spec:
        searches = [s for s in (spec["search"], spec.get("also_search")) if s]
        metrics = [[_search(s, names["cluster"], period, f"s{i}")] for i, s in enumerate(searches)]
    else:
        metrics = [_metric_row(m, names) for m in spec["metrics"]]
    properties: dict[str, Any] = {
        "title": spec["title"],
        "region": region,
        "view": "timeSeries",
        "stacked": False,
        "period": period,
        "metrics": metrics,
    }
    if spec.get("annotate_alarm"):
        properties["annotations"] = {
            "horizontal": [{"label": "alarm: Karpenter is not consuming", "value": ALARM["threshold_seconds"]}]
        }
    return {
        "type": "metric",
        "x": (index % 2) * WIDGET_WIDTH,
        "y": (index // 2) * WIDGET_HEIGHT,
        "width": WIDGET_WIDTH,
        "height": WIDGET_HEIGHT,
        "properties": properties,
    }


def dashboard_body(region: str, cluster: str, queue: str, rules: Mapping[str, str]) -> dict[str, Any]:
    """The dashboard body (CloudWatch dashboard body structure: `widgets` of type `metric`)."""
    names = {"cluster": cluster, "queue": queue, "rules": rules}
    return {"widgets": [_widget(i, spec, names, region) for i, spec in enumerate(DASHBOARD["widgets"])]}


def alarm_dimensions(queue: str) -> dict[str, str]:
    return {d: _value(p, {"queue": queue}) for d, p in ALARM["metric"]["dimensions"].items()}
