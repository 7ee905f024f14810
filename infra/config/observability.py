"""Keys of the stack's CloudWatch observability (infra/observability.py, infra/cloudwatch/): the add-on, the
dashboard and the alarm."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from infra.config.convert import Bool, Section, key


class ObservabilityKeys(Section):
    observability: Bool = key(
        True,
        "CloudWatch Observability add-on (Container Insights, no DCGM exporter), a GPU/Spot dashboard and an "
        "interruption-queue alarm; false removes all of it.",
    )
    observability_container_logs: Bool = key(
        False, "Ship every container's logs to CloudWatch Logs through the add-on's Fluent Bit (billed per GB)."
    )

    @field_validator("observability_container_logs")
    @classmethod
    def _container_logs(cls, v: bool, info: Any) -> bool:
        if v and info.data.get("observability") is False:
            raise ValueError("has no effect while observability is false; remove it or set observability true")
        return v
