"""Capacity preflight: will each GPU pool actually get GPUs, in this region, now?

    uv run python -m tools.preflight --stack dev [--config-file PATH] [--json] [--regions r1,r2]

Read-only AWS calls (policies/preflight-readonly.json), each bounded in time and retried on throttling; a check that
cannot run is reported as skipped. Exit 0: every pool can launch (warnings allowed); 3: some pool is blocked;
2: invalid config.
"""
