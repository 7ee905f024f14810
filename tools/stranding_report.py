"""render's view of GPU nodes that never start (infra/gpu/stranding.py; README, "Nodes that never start"): per pool,
which ways to strand it are closed and how, and one line on what is left."""

from __future__ import annotations

from typing import Any

SERVED_SHORT, REFUSED_SHORT = "served", "refused"


def closed_cell(pool: Any) -> str:
    """The pool table's cell: each case that could reach the pool, and whether such a pod is now served or refused."""
    from infra.gpu.stranding import SERVED, closed_cases

    if pool.static:
        return "- (static: never launched for a pod)"
    cases = closed_cases(pool)
    return "; ".join(f"{c.short}: {SERVED_SHORT if c.closed_by == SERVED else REFUSED_SHORT}" for c in cases)


def stranding_lines(cfg: Any) -> list[str]:
    """Under the pool table: how the cases are closed, and what no check here bounds."""
    from infra.admission import POLICY_NAME

    if not cfg.effective_gpu_pools:
        return []
    return [
        "  Nodes that never start: a pod requesting what a pool's nodes never advertise is refused at creation "
        f"(ValidatingAdmissionPolicy {POLICY_NAME}) or served (EFA device plugin on every node of an EFA type); "
        "hugepages and resources no GPU type has launch nothing. Karpenter never times out initialization: a node "
        "stuck for another reason bills until deleted (README, Nodes that never start)"
    ]
