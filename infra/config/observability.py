"""Keys of the stack's CloudWatch observability (infra/observability.py, infra/cloudwatch/): the add-on, the
dashboard and the alarm."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator

from infra.config.convert import Bool, Section, key

# arn:<partition>:sns:<region>:<account>:<topic name: 1-256 of letters, digits, - and _ (.fifo for FIFO topics)>
_SNS_TOPIC_ARN = re.compile(r"^arn:aws:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")


class ObservabilityKeys(Section):
    observability: Bool = key(
        True,
        "CloudWatch Observability add-on (Container Insights, no DCGM exporter), a GPU/Spot dashboard and an "
        "interruption-queue alarm; false removes all of it.",
    )
    observability_container_logs: Bool = key(
        False, "Ship every container's logs to CloudWatch Logs through the add-on's Fluent Bit (billed per GB)."
    )
    observability_alarm_topic: str = key(
        "", "SNS topic ARN the interruption-queue alarm notifies; empty: the alarm only changes state."
    )

    @field_validator("observability_alarm_topic")
    @classmethod
    def _alarm_topic(cls, v: str, info: Any) -> str:
        if not v:
            return v
        if not _SNS_TOPIC_ARN.match(v):
            raise ValueError("is not an SNS topic ARN like arn:aws:sns:us-west-2:123456789012:gpu-alerts")
        if info.data.get("observability") is False:
            raise ValueError("has no effect while observability is false; remove it or set observability true")
        return v

    @field_validator("observability_container_logs")
    @classmethod
    def _container_logs(cls, v: bool, info: Any) -> bool:
        if v and info.data.get("observability") is False:
            raise ValueError("has no effect while observability is false; remove it or set observability true")
        return v
