"""Keys of the AWS Load Balancer Controller (infra/lb_controller.py): only versions whose IAM policy is in policies/."""

from __future__ import annotations

from typing import Literal

from infra.config.convert import Section, key


class LbControllerKeys(Section):
    lb_controller_version: Literal["3.5.0"] = key(
        "3.5.0", "AWS Load Balancer Controller chart version (must match policies/aws-load-balancer-controller.json)."
    )
